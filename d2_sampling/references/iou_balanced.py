"""
References for IoU-balanced sampling (Libra R-CNN, Pang et al., arXiv 1904.02701), against
which the tests and benchmarks compare :func:`d2_sampling.modeling.iou_balanced_subsample`:

- :func:`iou_balanced_reference`: a plain-loop reading of our spec (docs/iou_balanced.md,
  "What the sampler does, exactly"), returning the deterministic parts of the outcome.
- :func:`mmdet_libra_sample`: MMDetection's algorithm (``CombinedSampler`` of
  ``InstanceBalancedPosSampler`` and ``IoUBalancedNegSampler``, mmdet 3.x), re-implemented step
  by step from its documented behaviour for timing and comparison, without MMDetection
  installed: numpy and Python sets on the host, a loop over bins and over GTs. It keeps the
  behaviours listed in docs/iou_balanced.md ("Ours vs the paper vs MMDetection").
"""

from typing import Any, Dict

import numpy as np
import torch

__all__ = ["iou_balanced_reference", "mmdet_libra_sample"]


def _as_list(x):
    return x.tolist() if hasattr(x, "tolist") else list(x)


def iou_balanced_reference(
    labels,
    ious,
    gt,
    num_samples: int,
    positive_fraction: float,
    num_bins: int,
    floor_thr: float,
    floor_fraction: float,
    bg_label: int,
) -> Dict[str, Any]:
    """
    Plain-loop reading of the spec of ``iou_balanced_subsample``: the deterministic parts of
    its outcome (the random draws themselves are not reproduced).

    Args:
        labels, ious, gt: (R,) labels (``-1`` ignore, ``bg_label`` background, else
            foreground), max IoUs, matched GT of each proposal; tensors or sequences.
        num_samples, positive_fraction, num_bins, floor_thr, floor_fraction, bg_label: as
            ``iou_balanced_subsample``.

    Returns:
        dict: ``num_pos`` (positives drawn), ``cand`` ({gt: #candidates}), ``level`` (the
        water-filling level t: every GT gives ``min(count, t)`` or one more), ``num_neg``
        (negatives drawn); when the negatives are subsampled also ``members`` (per bin, the
        balanced negatives in it), ``per_bin`` (each bin's guaranteed draws), ``floor`` (set of
        floor-set indices), ``floor_total`` and ``balanced_total`` (draws from each).
    """
    labels, ious, gt = _as_list(labels), _as_list(ious), _as_list(gt)
    positives = [i for i, v in enumerate(labels) if v not in (-1, bg_label)]
    negatives = [i for i, v in enumerate(labels) if v == bg_label]
    num_pos = min(len(positives), int(num_samples * positive_fraction))
    # water level: the largest t with sum(min(c, t)) <= num_pos
    cand = {}
    for i in positives:
        cand[gt[i]] = cand.get(gt[i], 0) + 1
    t = 0
    while sum(min(c, t + 1) for c in cand.values()) <= num_pos and t < len(positives):
        t += 1
    quota = num_samples - num_pos
    out = dict(num_pos=num_pos, cand=cand, level=t, num_neg=min(len(negatives), quota))
    if len(negatives) <= quota:
        return out
    floor = [i for i in negatives if floor_thr >= 0 and ious[i] < floor_thr]
    balanced = [i for i in negatives if i not in floor]
    low = max(floor_thr, 0.0)
    h = max(ious[i] for i in negatives)
    members = [[] for _ in range(num_bins)]
    for i in balanced:
        k = 0
        while k < num_bins - 1 and ious[i] > low + (k + 1) * (h - low) / num_bins:
            k += 1
        members[k].append(i)
    floor_take = min(len(floor), int(quota * floor_fraction))
    per_bin = [min(len(m), (quota - floor_take) // num_bins) for m in members]
    missing = quota - floor_take - sum(per_bin)
    fill_balanced = min(missing, len(balanced) - sum(per_bin))
    out.update(
        members=members,
        per_bin=per_bin,
        floor=set(floor),
        floor_total=floor_take + (missing - fill_balanced),
        balanced_total=sum(per_bin) + fill_balanced,
    )
    return out


# --------------------------------------------------------------------------------------------
# MMDetection's algorithm
# --------------------------------------------------------------------------------------------
def _mmdet_random_choice(gallery, num):
    """RandomSampler.random_choice: a torch randperm, numpy in -> numpy out."""
    is_tensor = isinstance(gallery, torch.Tensor)
    if not is_tensor:
        gallery = torch.tensor(gallery, dtype=torch.long)
    perm = torch.randperm(gallery.numel(), device=gallery.device)[:num]
    chosen = gallery[perm]
    return chosen if is_tensor else chosen.cpu().numpy()


def _mmdet_instance_balanced_pos(gt_inds, num_expected):
    pos_inds = torch.nonzero(gt_inds > 0, as_tuple=False).squeeze(1)
    if pos_inds.numel() <= num_expected:
        return pos_inds
    unique_gts = gt_inds[pos_inds].unique()
    per_gt = int(round(num_expected / float(len(unique_gts))) + 1)
    picked = []
    for g in unique_gts:
        inds = torch.nonzero(gt_inds == g.item(), as_tuple=False).squeeze(1)
        if len(inds) > per_gt:
            inds = _mmdet_random_choice(inds, per_gt)
        picked.append(inds)
    picked = torch.cat(picked)
    if len(picked) < num_expected:
        # MMDetection builds these sets from 0-d tensors (compared by identity); plain ints
        # here, which is what it means and costs about the same.
        extra = np.array(list(set(pos_inds.tolist()) - set(picked.tolist())), dtype=np.int64)
        if len(extra) > num_expected - len(picked):
            extra = _mmdet_random_choice(extra, num_expected - len(picked))
        picked = torch.cat([picked, torch.from_numpy(extra).long()])
    elif len(picked) > num_expected:
        picked = _mmdet_random_choice(picked, num_expected)
    return picked


def _mmdet_sample_via_interval(max_overlaps, full_set, num_expected, floor_thr, num_bins):
    max_iou = max_overlaps.max()  # over ALL proposals, positives included
    width = (max_iou - floor_thr) / num_bins
    per_bin = int(num_expected / num_bins)
    picked = []
    for i in range(num_bins):
        start, end = floor_thr + i * width, floor_thr + (i + 1) * width
        in_bin = set(np.where(np.logical_and(max_overlaps >= start, max_overlaps < end))[0])
        inds = list(in_bin & full_set)
        if len(inds) > per_bin:
            picked.append(_mmdet_random_choice(inds, per_bin))
        else:
            picked.append(np.array(inds, dtype=np.int64))
    picked = np.concatenate(picked)
    if len(picked) < num_expected:
        extra = np.array(list(full_set - set(picked)))
        if len(extra) > num_expected - len(picked):
            extra = _mmdet_random_choice(extra, num_expected - len(picked))
        picked = np.concatenate([picked, extra])
    return picked


def _mmdet_iou_balanced_neg(
    gt_inds, max_overlaps_t, num_expected, floor_thr, floor_fraction, num_bins
):
    neg_inds = torch.nonzero(gt_inds == 0, as_tuple=False).squeeze(1)
    if len(neg_inds) <= num_expected:
        return neg_inds
    max_overlaps = max_overlaps_t.cpu().numpy()
    neg_set = set(neg_inds.cpu().numpy())
    if floor_thr > 0:
        floor_set = set(np.where(np.logical_and(max_overlaps >= 0, max_overlaps < floor_thr))[0])
        iou_set = set(np.where(max_overlaps >= floor_thr)[0])
    elif floor_thr == 0:
        floor_set = set(np.where(max_overlaps == 0)[0])
        iou_set = set(np.where(max_overlaps > floor_thr)[0])
    else:
        floor_set = set()
        iou_set = set(np.where(max_overlaps > floor_thr)[0])
        floor_thr = 0  # MMDetection stores this on the sampler (self.floor_thr = 0)
    floor_neg = list(floor_set & neg_set)
    iou_neg = list(iou_set & neg_set)
    num_iou = int(num_expected * (1 - floor_fraction))
    if len(iou_neg) > num_iou:
        if num_bins >= 2:
            iou_picked = _mmdet_sample_via_interval(
                max_overlaps, set(iou_neg), num_iou, floor_thr, num_bins
            )
        else:
            iou_picked = _mmdet_random_choice(iou_neg, num_iou)
    else:
        iou_picked = np.array(iou_neg, dtype=np.int64)
    num_floor = num_expected - len(iou_picked)
    if len(floor_neg) > num_floor:
        floor_picked = _mmdet_random_choice(floor_neg, num_floor)
    else:
        floor_picked = np.array(floor_neg, dtype=np.int64)
    picked = np.concatenate((floor_picked, iou_picked))
    if len(picked) < num_expected:
        extra = np.array(list(neg_set - set(picked)))
        if len(extra) > num_expected - len(picked):
            extra = _mmdet_random_choice(extra, num_expected - len(picked))
        picked = np.concatenate((picked, extra))
    return torch.from_numpy(picked).long().to(gt_inds.device)


def mmdet_libra_sample(
    gt_inds,
    max_overlaps,
    num=512,
    pos_fraction=0.25,
    floor_thr=-1.0,
    floor_fraction=0.0,
    num_bins=3,
):
    """
    MMDetection's CombinedSampler(InstanceBalancedPosSampler, IoUBalancedNegSampler).sample.

    Args:
        gt_inds (Tensor): (R,) MMDetection's convention: 0 negative, -1 ignored, i + 1 GT i.
        max_overlaps (Tensor): (R,) max IoU of each proposal.

    Returns:
        pos_inds, neg_inds (Tensor)
    """
    pos = _mmdet_instance_balanced_pos(gt_inds, int(num * pos_fraction)).unique()
    neg = _mmdet_iou_balanced_neg(
        gt_inds, max_overlaps, num - pos.numel(), floor_thr, floor_fraction, num_bins
    ).unique()
    return pos, neg
