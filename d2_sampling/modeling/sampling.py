"""
IoU-balanced sampling and instance-balanced positives, from Libra R-CNN (Pang et al., "Libra
R-CNN: Towards Balanced Learning for Object Detection", CVPR 2019, arXiv 1904.02701, Sec. 3.1).

Random sampling draws the negatives of an ROI batch uniformly, so nearly all of them are easy,
near-zero-IoU background. Libra R-CNN splits the negatives into K equal-width IoU bins and draws
the same number from each bin, which moves the sample distribution towards that of hard
negatives (ranked by loss) without computing any loss. Positives are spread evenly over the
ground-truth instances, so a large object with many matching proposals does not crowd out the
small ones.

``iou_balanced_subsample`` is a drop-in for Detectron2's ``subsample_labels`` (same label
convention, same return values) that also takes each proposal's IoU and matched GT. It is pure,
config-free and device-agnostic: every bin (and every GT) is drawn from in one vectorised pass
(a random permutation and a running count per group), with no host round-trip per bin or GT.

Where this departs from the paper and from MMDetection (``IoUBalancedNegSampler`` and
``InstanceBalancedPosSampler``, the reference implementation), and why:

- Bin range. MMDetection spreads its bins over ``[floor_thr, max IoU of all proposals]``; the
  proposals include positives and the GT boxes themselves (IoU 1), so with the usual 0.5
  foreground threshold and 3 bins, the top bin ``[0.67, 1)`` never holds a negative and a third
  of the balanced quota is silently redistributed at random. Here the bins span
  ``[max(floor_thr, 0), h]`` with ``h`` the highest IoU among the *negatives*, so every bin can
  be filled; the result matches the paper's description (K bins over the negatives' IoU range).
- ``floor_thr`` is never modified. MMDetection overwrites ``self.floor_thr = 0`` on its first
  call when it was -1, so a sampler object behaves differently before and after its first use.
- ``floor_thr == 0`` has no special case: the floor set is "IoU < floor_thr", which is empty
  for 0. (MMDetection makes the floor set "IoU == 0" for that value only.)
- Floor quota first. The floor set gets ``int(quota * floor_fraction)`` draws and the bins
  share what the floor set actually gave; MMDetection samples the bins first with
  ``int(quota * (1 - floor_fraction))`` and gives the floor set the rest. The totals agree; the
  bins get a larger share here when the floor set is small.
- Positives are exactly water-filled over GTs: a GT with fewer candidates than its share gives
  them all, the others split the rest, and any two GTs that keep unsampled candidates differ by
  at most one (the remainder goes to GTs chosen at random). MMDetection gives every GT
  ``round(n / num_gts) + 1`` candidates, tops up from a set difference of tensors (which
  compares tensor identities, not values, and can return duplicates) and finally subsamples at
  random, which undoes the balance.
- Everything stays on the tensors' device; MMDetection converts to numpy and Python sets.
"""

import math
from typing import Optional, Tuple

import torch

__all__ = ["iou_balanced_subsample", "iou_bin_index", "check_iou_balanced_args"]


def check_iou_balanced_args(
    num_bins: int, floor_thr: float, floor_fraction: float, positive_fraction: float = 0.25
) -> None:
    """
    Raise ``ValueError`` naming the config key (and the argument) of the first bad value.

    Args:
        num_bins (int): must be an integer >= 1 (``MODEL.IOU_BALANCED.NUM_BINS``).
        floor_thr (float): must be < 1; negative disables the floor set
            (``MODEL.IOU_BALANCED.FLOOR_THR``).
        floor_fraction (float): must lie in [0, 1] (``MODEL.IOU_BALANCED.FLOOR_FRACTION``).
        positive_fraction (float): must lie in [0, 1] (``MODEL.ROI_HEADS.POSITIVE_FRACTION``).
    """
    if isinstance(num_bins, bool) or int(num_bins) != num_bins or num_bins < 1:
        raise ValueError(
            f"MODEL.IOU_BALANCED.NUM_BINS (num_bins) must be an integer >= 1, got {num_bins!r}"
        )
    if not (isinstance(floor_thr, (int, float)) and math.isfinite(floor_thr) and floor_thr < 1):
        raise ValueError(
            "MODEL.IOU_BALANCED.FLOOR_THR (floor_thr) must be a finite number < 1 (negative "
            f"disables the floor set), got {floor_thr!r}"
        )
    if not (isinstance(floor_fraction, (int, float)) and 0.0 <= floor_fraction <= 1.0):
        raise ValueError(
            "MODEL.IOU_BALANCED.FLOOR_FRACTION (floor_fraction) must lie in [0, 1], "
            f"got {floor_fraction!r}"
        )
    if not (isinstance(positive_fraction, (int, float)) and 0.0 <= positive_fraction <= 1.0):
        raise ValueError(
            "MODEL.ROI_HEADS.POSITIVE_FRACTION (positive_fraction) must lie in [0, 1], "
            f"got {positive_fraction!r}"
        )


def iou_bin_index(
    ious: torch.Tensor, num_bins: int, low: float, high: torch.Tensor
) -> torch.Tensor:
    """
    The equal-width IoU bin of each value. With edges ``e_k = low + k * (high - low) / K``
    (computed in the IoUs' dtype), bin 0 holds everything up to ``e_1`` and bin ``k > 0`` holds
    ``(e_k, e_{k+1}]``; the last bin also holds everything above ``high``. A value exactly on an
    edge belongs to the lower bin, so ``high <= low`` (no range, e.g. an image without GT where
    every IoU is 0) puts every value ``<= low`` in bin 0.

    Args:
        ious (Tensor): (N,) float IoUs.
        num_bins (int): K >= 1.
        low (float): lower edge of bin 0.
        high (Tensor or float): upper edge of bin K-1 (a 0-dim tensor avoids a host sync).

    Returns:
        Tensor: (N,) int64 bin indices in ``[0, num_bins)``.
    """
    # The K-1 inner edges, then one binary search per value: exact comparisons against the
    # edges, and cheaper than scaling, flooring and clamping.
    frac = _cached(_EDGE_FRACTIONS, num_bins, ious.dtype, ious.device)
    high = torch.as_tensor(high, dtype=ious.dtype, device=ious.device)
    edges = frac * high if low == 0 else frac * (high - low) + low
    return torch.bucketize(ious, edges)


def _EDGE_FRACTIONS(k: int) -> torch.Tensor:
    return torch.arange(1, k, dtype=torch.float64) / k


def _ARANGE(k: int) -> torch.Tensor:
    return torch.arange(k)


_CACHE = {}


def _cached(make, k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``make(k)`` in ``dtype`` on ``device``, built once: building it costs as much as using it."""
    key = (make.__name__, k, dtype, device)
    t = _CACHE.get(key)
    if t is None:
        t = _CACHE[key] = make(k).to(dtype=dtype, device=device)
    return t


def _count_in_group(group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """
    Args:
        group (Tensor): (n,) int64 in ``[0, num_groups)``.
        num_groups (int): G.

    Returns:
        Tensor: (n,) int32, for each element the number of elements of its group up to and
        including itself (its 1-based rank inside the group, in the given order). One (G, n)
        cumulative sum instead of a sort: for the few groups used here it is the cheaper of the
        two on CPU, and the sum runs along contiguous memory.
    """
    onehot = _cached(_ARANGE, num_groups, group.dtype, group.device)[:, None] == group
    return onehot.cumsum(1, dtype=torch.int32).gather(0, group[None]).squeeze_(0)


def _smallest(key: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` smallest of ``key`` (distinct int64 keys), in no order."""
    return torch.topk(key, k, largest=False, sorted=False).indices


def iou_balanced_subsample(
    labels: torch.Tensor,
    ious: torch.Tensor,
    num_samples: int,
    positive_fraction: float,
    bg_label: int,
    *,
    num_bins: int = 3,
    floor_thr: float = -1.0,
    floor_fraction: float = 0.0,
    gt_indices: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    Return ``num_samples`` (or fewer, if not enough exist) samples of ``labels``: positives
    spread over GT instances, negatives spread over IoU bins (Libra R-CNN). Same contract as
    Detectron2's ``subsample_labels``, plus each proposal's IoU and matched GT.

    Positives: ``min(#positives, int(num_samples * positive_fraction))`` of them. With
    ``gt_indices``, instance-balanced: the draws are spread over the GTs as evenly as possible
    (a GT with fewer candidates than its share gives all it has, the others split the rest, and
    any two GTs with unsampled candidates left differ by at most one), uniformly inside each
    GT. Without it, uniform over all positives.

    Negatives: the quota is ``num_samples`` minus the positives taken. If there are no more
    negatives than that, all of them. Otherwise:

    - when ``floor_thr >= 0``, the negatives with IoU < ``floor_thr`` form a floor set that gets
      ``int(quota * floor_fraction)`` uniform draws (all of it, if it has fewer);
    - the other negatives (all of them when ``floor_thr < 0``) are split into ``num_bins``
      equal-width bins over ``[max(floor_thr, 0), h]``, ``h`` the highest IoU among negatives
      (see :func:`iou_bin_index`); with ``quota_b`` = quota minus the floor draws, each bin gets
      ``quota_b // num_bins`` uniform draws (all of it, if it has fewer);
    - what is still missing is drawn uniformly from the balanced negatives not yet drawn, then
      from the floor set.

    No index is returned twice. Runs on the tensors' device with a constant number of host
    synchronisations (the sizes of the outputs, the number of GTs, whether a fill is needed),
    none per bin or per GT.

    Args:
        labels (Tensor): (R,) int64: ``-1`` ignore, ``bg_label`` background, any other value a
            foreground class (``0..K-1`` with ``bg_label = K`` in the ROI heads).
        ious (Tensor): (R,) float, each proposal's highest IoU with any GT (0 when there is
            none). Only the negatives' values are used.
        num_samples (int): total number of samples wanted (positives + negatives).
        positive_fraction (float): in [0, 1]; at most ``int(num_samples * positive_fraction)``
            positives.
        bg_label (int): the background label.
        num_bins (int): K >= 1, the number of IoU bins of the negatives (paper: 3).
        floor_thr (float): < 1. Negatives with IoU below it form the floor set; negative
            disables the floor set (Libra R-CNN's setting).
        floor_fraction (float): in [0, 1], the share of the negative quota drawn from the floor
            set (Libra R-CNN: 0).
        gt_indices (Tensor or None): (R,) integer, the GT each proposal is matched to, in
            ``[0, M)`` for positives (any value elsewhere); a (M, #positives) count is built, so
            M should be a number of GTs, not an arbitrary id. Given: instance-balanced
            positives; None: uniform positives.

    Returns:
        pos_idx, neg_idx (Tensor): 1D int64 indices into ``labels``. The total length of both
        is ``num_samples`` or fewer.
    """
    check_iou_balanced_args(num_bins, floor_thr, floor_fraction, positive_fraction)
    if labels.dim() != 1 or ious.shape != labels.shape:
        raise ValueError(
            f"labels and ious must both be of shape (R,), got {tuple(labels.shape)} and "
            f"{tuple(ious.shape)}"
        )
    if gt_indices is not None and gt_indices.shape != labels.shape:
        raise ValueError(
            f"gt_indices must be of shape (R,) = {tuple(labels.shape)}, "
            f"got {tuple(gt_indices.shape)}"
        )
    num_bins = int(num_bins)
    positive = torch.nonzero((labels != -1) & (labels != bg_label)).view(-1)
    negative = torch.nonzero(labels == bg_label).view(-1)

    # --- positives ---
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    if gt_indices is None or num_pos == positive.numel():
        pos_idx = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
    elif num_pos > 0:
        # Round robin over GTs: in a random order of the positives, rank r inside its GT means
        # "the r-th candidate of that GT". Taking the num_pos smallest (rank, GT priority) takes
        # every rank below some level t from every GT (all of a GT with fewer than t) and, at
        # level t, one more from GTs in a random priority order: exact water-filling, uniform
        # inside a GT. (Breaking the ties by position in the permutation instead would favour
        # GTs with many candidates, whose t-th candidate tends to come earlier.)
        p = positive.numel()
        positive = positive.index_select(0, torch.randperm(p, device=positive.device))
        gt = gt_indices.index_select(0, positive).long()
        num_gt = int(gt.max()) + 1
        gt_priority = torch.randperm(num_gt, device=gt.device).index_select(0, gt)
        key = torch.add(gt_priority, _count_in_group(gt, num_gt), alpha=num_gt)
        pos_idx = positive.index_select(0, _smallest(key, num_pos))
    else:
        pos_idx = positive[:0]

    # --- negatives ---
    num_neg = max(num_samples - num_pos, 0)
    n = negative.numel()
    if n <= num_neg:
        return pos_idx, negative
    # Group of each negative, in a random order: IoU bins 0..K-1, floor set K.
    negative = negative.index_select(0, torch.randperm(n, device=negative.device))
    neg_ious = ious.index_select(0, negative)
    group = iou_bin_index(neg_ious, num_bins, max(floor_thr, 0.0), neg_ious.max())
    if floor_thr >= 0:
        group.masked_fill_(neg_ious < floor_thr, num_bins)
        counts = torch.bincount(group, minlength=num_bins + 1)
        floor_take = counts[num_bins:].clamp(max=int(num_neg * floor_fraction))
        per_bin = torch.minimum(
            counts[:num_bins], torch.div(num_neg - floor_take, num_bins, rounding_mode="floor")
        )
        quota = torch.cat([per_bin, floor_take])
    else:
        quota = torch.bincount(group, minlength=num_bins).clamp_(max=num_neg // num_bins)
    # Priority 0: the first quota[g] of each group in the random order (a uniform draw per
    # group). Then, if the groups could not give the whole quota, the fill in a fresh random
    # order (reusing the first one would favour the bins with fewer leftovers, which come late
    # in it): 1 = balanced negatives not drawn yet, 2 = the floor set.
    undrawn = _count_in_group(group, quota.numel()) > quota.index_select(0, group)
    if int(quota.sum()) == num_neg:  # every bin had its share: nothing to fill
        return pos_idx, negative[~undrawn]
    if floor_thr >= 0:
        undrawn = undrawn.long() + (undrawn & (group == num_bins))
    key = torch.add(torch.randperm(n, device=negative.device), undrawn, alpha=n)
    return pos_idx, negative.index_select(0, _smallest(key, num_neg))
