"""
IoU-balanced sampling and instance-balanced positives, from Libra R-CNN (Pang et al., "Libra
R-CNN: Towards Balanced Learning for Object Detection", CVPR 2019, arXiv 1904.02701, Sec. 3.1).

Random sampling draws the negatives of an ROI batch uniformly, so nearly all of them are easy,
near-zero-IoU background. Libra R-CNN splits the negatives into K equal-width IoU bins and draws
the same number from each bin, which moves the sample distribution towards that of hard
negatives (ranked by loss) without computing any loss. Positives are spread evenly over the
ground-truth instances, so a large object with many matching proposals does not crowd out the
small ones.

``IoUBalancedSampler`` (hyperparameters checked once, then called per image) and its one-call
form ``iou_balanced_subsample`` are drop-ins for Detectron2's ``subsample_labels`` (same label
convention, same return values) that also take each proposal's IoU and matched GT, and can
return the bin of each sampled negative (``NegativeBins``) for logging. They are pure,
config-free and device-agnostic: every bin (and every GT) is drawn from in one vectorised pass
(a random permutation and a running count per group), with no host round-trip per bin or GT.

The exact semantics, and where and why they depart from the paper and from MMDetection's
samplers, are in docs/iou_balanced.md ("What the sampler does, exactly" and "Ours vs the paper
vs MMDetection").
"""

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple, Union

import torch

__all__ = [
    "IoUBalancedSampler",
    "NegativeBins",
    "check_iou_balanced_args",
    "iou_balanced_subsample",
    "iou_bin_index",
]


def check_iou_balanced_args(
    num_bins: int,
    floor_thr: float,
    floor_fraction: float,
    positive_fraction: float = 0.25,
    *,
    names: Optional[Mapping[str, str]] = None,
) -> None:
    """
    Raise ``ValueError`` for the first bad value, naming it as ``names[argument]`` (default:
    the argument's own name) and showing the value. Wrappers pass their config keys as
    ``names``, so that the rules live here once and the message speaks their language.

    Args:
        num_bins (int): must be an integer >= 1.
        floor_thr (float): must be a finite number < 1; negative disables the floor set.
        floor_fraction (float): must lie in [0, 1].
        positive_fraction (float): must lie in [0, 1].
        names (Mapping[str, str], optional): argument name -> how to call it in the message.
    """
    names = names or {}

    def bad(arg, want, value):
        return ValueError(f"{names.get(arg, arg)} must be {want}, got {value!r}")

    if isinstance(num_bins, bool) or int(num_bins) != num_bins or num_bins < 1:
        raise bad("num_bins", "an integer >= 1", num_bins)
    if not (isinstance(floor_thr, (int, float)) and math.isfinite(floor_thr) and floor_thr < 1):
        raise bad("floor_thr", "a finite number < 1 (negative disables the floor set)", floor_thr)
    if not (isinstance(floor_fraction, (int, float)) and 0.0 <= floor_fraction <= 1.0):
        raise bad("floor_fraction", "in [0, 1]", floor_fraction)
    if not (isinstance(positive_fraction, (int, float)) and 0.0 <= positive_fraction <= 1.0):
        raise bad("positive_fraction", "in [0, 1]", positive_fraction)


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


@dataclass
class NegativeBins:
    """
    Where the sampled negatives of one image came from, as the sampler decided it (so that a
    caller can log or plot it without recomputing the bins).

    Attributes:
        groups (Tensor): (S_neg,) int64, aligned with the returned ``neg_idx``: the IoU bin
            ``0..K-1`` of each sampled negative, or ``K`` for the floor set.
        num_bins (int): K.
        low (float): lower edge of bin 0, ``max(floor_thr, 0)``.
        high (Tensor): 0-dim, upper edge of bin K-1: the highest IoU among all the negatives of
            the image (0 when there is none). Bin ``k`` spans
            ``(low + k * (high - low) / K, low + (k + 1) * (high - low) / K]``; see
            :func:`iou_bin_index`.
    """

    groups: torch.Tensor
    num_bins: int
    low: float
    high: torch.Tensor

    def counts(self) -> torch.Tensor:
        """(K + 1,) int64: sampled negatives per IoU bin, then in the floor set (0 without)."""
        return torch.bincount(self.groups, minlength=self.num_bins + 1)


class IoUBalancedSampler:
    """
    Libra R-CNN's ROI sampler with fixed hyperparameters, checked once here; calling it draws
    one image's sample (see :func:`iou_balanced_subsample` for the rules). Build it once (an ROI
    head does, in ``__init__``) and call it per image: the call does not re-check the
    hyperparameters.
    """

    def __init__(self, num_bins: int = 3, floor_thr: float = -1.0, floor_fraction: float = 0.0):
        """
        Args:
            num_bins (int): K >= 1, the number of IoU bins of the negatives (paper: 3).
            floor_thr (float): < 1. Negatives with IoU below it form the floor set; negative
                disables the floor set (Libra R-CNN's setting).
            floor_fraction (float): in [0, 1], the share of the negative quota drawn from the
                floor set (Libra R-CNN: 0).

        Raises:
            ValueError: a bad value, naming the argument.
        """
        check_iou_balanced_args(num_bins, floor_thr, floor_fraction)
        self.num_bins = int(num_bins)
        self.floor_thr = floor_thr
        self.floor_fraction = floor_fraction

    def __repr__(self):
        return (
            f"IoUBalancedSampler(num_bins={self.num_bins}, floor_thr={self.floor_thr}, "
            f"floor_fraction={self.floor_fraction})"
        )

    def __call__(
        self,
        labels: torch.Tensor,
        ious: torch.Tensor,
        num_samples: int,
        positive_fraction: float,
        bg_label: int,
        *,
        gt_indices: Optional[torch.Tensor] = None,
        return_bins: bool = False,
    ) -> Union[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor, NegativeBins]]:
        """
        Same arguments and returns as :func:`iou_balanced_subsample`, less the hyperparameters.
        ``positive_fraction`` is not checked here (as in ``subsample_labels``); the caller
        checks it once, where it enters.
        """
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
        num_bins, floor_thr, floor_fraction = self.num_bins, self.floor_thr, self.floor_fraction
        low = max(floor_thr, 0.0)
        positive = torch.nonzero((labels != -1) & (labels != bg_label)).view(-1)
        negative = torch.nonzero(labels == bg_label).view(-1)

        # --- positives ---
        num_pos = min(positive.numel(), int(num_samples * positive_fraction))
        if gt_indices is None or num_pos == positive.numel():
            pos_idx = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
        elif num_pos > 0:
            # Round robin over GTs: in a random order of the positives, rank r inside its GT
            # means "the r-th candidate of that GT". Taking the num_pos smallest (rank, GT
            # priority) takes every rank below some level t from every GT (all of a GT with
            # fewer than t) and, at level t, one more from GTs in a random priority order: exact
            # water-filling, uniform inside a GT. (Breaking the ties by position in the
            # permutation instead would favour GTs with many candidates, whose t-th candidate
            # tends to come earlier.)
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
            if not return_bins:
                return pos_idx, negative
            # All of them; their bins only because the caller asked (no randomness used).
            neg_ious = ious.index_select(0, negative)
            high = neg_ious.max() if n > 0 else ious.new_zeros(())
            return pos_idx, negative, self._bins(self._groups(neg_ious, low, high), low, high)
        # Group of each negative, in a random order: IoU bins 0..K-1, floor set K.
        negative = negative.index_select(0, torch.randperm(n, device=negative.device))
        neg_ious = ious.index_select(0, negative)
        high = neg_ious.max()
        group = self._groups(neg_ious, low, high)
        if floor_thr >= 0:
            counts = torch.bincount(group, minlength=num_bins + 1)
            floor_take = counts[num_bins:].clamp(max=int(num_neg * floor_fraction))
            per_bin = torch.minimum(
                counts[:num_bins],
                torch.div(num_neg - floor_take, num_bins, rounding_mode="floor"),
            )
            quota = torch.cat([per_bin, floor_take])
        else:
            quota = torch.bincount(group, minlength=num_bins).clamp_(max=num_neg // num_bins)
        # Priority 0: the first quota[g] of each group in the random order (a uniform draw per
        # group). Then, if the groups could not give the whole quota, the fill in a fresh random
        # order (reusing the first one would favour the bins with fewer leftovers, which come
        # late in it): 1 = balanced negatives not drawn yet, 2 = the floor set.
        undrawn = _count_in_group(group, quota.numel()) > quota.index_select(0, group)
        if int(quota.sum()) == num_neg:  # every bin had its share: nothing to fill
            drawn = ~undrawn
            neg_idx = negative[drawn]
            if not return_bins:
                return pos_idx, neg_idx
            return pos_idx, neg_idx, self._bins(group[drawn], low, high)
        if floor_thr >= 0:
            undrawn = undrawn.long() + (undrawn & (group == num_bins))
        key = torch.add(torch.randperm(n, device=negative.device), undrawn, alpha=n)
        chosen = _smallest(key, num_neg)
        neg_idx = negative.index_select(0, chosen)
        if not return_bins:
            return pos_idx, neg_idx
        return pos_idx, neg_idx, self._bins(group.index_select(0, chosen), low, high)

    def _groups(self, neg_ious: torch.Tensor, low: float, high: torch.Tensor) -> torch.Tensor:
        """(n,) int64 group of each negative: its IoU bin, or ``num_bins`` for the floor set."""
        group = iou_bin_index(neg_ious, self.num_bins, low, high)
        if self.floor_thr >= 0:
            group.masked_fill_(neg_ious < self.floor_thr, self.num_bins)
        return group

    def _bins(self, groups: torch.Tensor, low: float, high: torch.Tensor) -> NegativeBins:
        return NegativeBins(groups=groups, num_bins=self.num_bins, low=low, high=high)


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
    return_bins: bool = False,
) -> Union[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor, NegativeBins]]:
    """
    Return ``num_samples`` (or fewer, if not enough exist) samples of ``labels``: positives
    spread over GT instances, negatives spread over IoU bins (Libra R-CNN). Same contract as
    Detectron2's ``subsample_labels``, plus each proposal's IoU and matched GT. Checks every
    argument, then runs ``IoUBalancedSampler(num_bins, floor_thr, floor_fraction)``; code that
    samples every step builds the sampler once instead.

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
        return_bins (bool): also return the group of each sampled negative.

    Returns:
        pos_idx, neg_idx (Tensor): 1D int64 indices into ``labels``. The total length of both
        is ``num_samples`` or fewer.
        bins (NegativeBins): only with ``return_bins``: the IoU bin (or floor set) that each
        of ``neg_idx`` was drawn from, and the bin range.

    Raises:
        ValueError: a bad hyperparameter (naming the argument) or mismatched shapes.
    """
    check_iou_balanced_args(num_bins, floor_thr, floor_fraction, positive_fraction)
    sampler = IoUBalancedSampler(num_bins, floor_thr, floor_fraction)
    return sampler(
        labels,
        ious,
        num_samples,
        positive_fraction,
        bg_label,
        gt_indices=gt_indices,
        return_bins=return_bins,
    )
