"""
What the Detectron2 wrappers of :class:`~d2_sampling.modeling.IoUBalancedSampler` share (the ROI
heads' ``IoUBalancedSamplingMixin``, the RPN's ``IoUBalancedRPN``): building the sampler once
from checked settings, and the statistics they log of each step's draw.

- :class:`IoUBalancedSettings`: a mixin holding ``self.sampler`` and
  ``self.instance_balanced_positives``, built by :meth:`~IoUBalancedSettings.setup_sampler`
  from values checked against the host's config keys, with read-only views of the settings.
- :func:`sample_stats` / :func:`log_sample_stats`: one image's statistics as a small tensor kept
  on the device, then the step's means logged under a prefix (``roi_head/``, ``rpn/``) with one
  host sync per step.
"""

from typing import List, Mapping

import torch
from detectron2.utils.events import get_event_storage

from .iou_balanced_sampling import IoUBalancedSampler, NegativeBins, check_iou_balanced_args

__all__ = ["IoUBalancedSettings", "log_sample_stats", "sample_stats"]


class IoUBalancedSettings:
    """
    Mixin of the modules that sample with :class:`IoUBalancedSampler`. The host must have a
    ``positive_fraction`` attribute (Detectron2's ROI heads and RPN do) before
    :meth:`setup_sampler` is called.
    """

    def setup_sampler(
        self,
        num_bins: int,
        floor_thr: float,
        floor_fraction: float,
        instance_balanced_positives: bool,
        names: Mapping[str, str],
    ):
        """
        Check the settings (a ``ValueError`` names the bad one as ``names[argument]``, the
        host's config key), then build ``self.sampler`` once: it is then called every step
        without re-checking.
        """
        check_iou_balanced_args(
            num_bins, floor_thr, floor_fraction, self.positive_fraction, names=names
        )
        self.sampler = IoUBalancedSampler(int(num_bins), float(floor_thr), float(floor_fraction))
        self.instance_balanced_positives = bool(instance_balanced_positives)

    # Read-only views of the sampler's settings: one copy, that cannot drift from the sampler.
    @property
    def num_bins(self) -> int:
        return self.sampler.num_bins

    @property
    def floor_thr(self) -> float:
        return self.sampler.floor_thr

    @property
    def floor_fraction(self) -> float:
        return self.sampler.floor_fraction


def sample_stats(
    ious: torch.Tensor,
    matched_idxs: torch.Tensor,
    pos_idx: torch.Tensor,
    neg_idx: torch.Tensor,
    bins: NegativeBins,
    num_gt: int,
) -> torch.Tensor:
    """
    One image's draw, as a (K + 6,) float tensor on the device: sampled negatives per bin (K,
    the sampler's own counts) and in the floor set, the sum of their IoUs, #positives,
    #negatives, #GTs with a sampled positive, #GTs.

    Args:
        ious (Tensor): (R,) each candidate's IoU with its matched GT.
        matched_idxs (Tensor): (R,) int64, its matched GT.
        pos_idx, neg_idx (Tensor): int64 indices of the sampled positives / negatives.
        bins (NegativeBins): the sampler's bins of the sampled negatives.
        num_gt (int): GTs of the image.
    """
    counts = bins.counts().to(ious.dtype)
    gt_hit = torch.zeros(num_gt, dtype=torch.bool, device=ious.device)
    gt_hit[matched_idxs[pos_idx]] = True
    return torch.cat(
        [
            counts,
            ious[neg_idx].sum()[None],
            ious.new_tensor([pos_idx.numel(), neg_idx.numel()]),
            gt_hit.sum()[None].to(ious.dtype),
            ious.new_tensor([num_gt]),
        ]
    )


def log_sample_stats(stats: List[torch.Tensor], prefix: str, num_bins: int, floor: bool):
    """
    Log the means over the images of one step (``stats``: :func:`sample_stats` per image) to
    the current ``EventStorage``: ``{prefix}iou_balanced_neg_bin{k}``, ``..._neg_floor`` (with
    ``floor``), ``..._neg_mean_iou`` (over all the step's sampled negatives, when any),
    ``..._num_gt_sampled`` and ``..._num_gt``.

    Returns:
        list[float]: the means (the layout of :func:`sample_stats`), for the caller's own
        scalars.
    """
    k = num_bins
    per_image = torch.stack(stats).cpu()  # (N, K + 6), one host sync per step
    mean = per_image.mean(0).tolist()
    iou_sum, num_neg = per_image[:, k + 1].sum().item(), per_image[:, k + 3].sum().item()
    storage = get_event_storage()
    for i in range(k):
        storage.put_scalar(f"{prefix}iou_balanced_neg_bin{i}", mean[i])
    if floor:
        storage.put_scalar(f"{prefix}iou_balanced_neg_floor", mean[k])
    if num_neg > 0:
        storage.put_scalar(f"{prefix}iou_balanced_neg_mean_iou", iou_sum / num_neg)
    storage.put_scalar(f"{prefix}iou_balanced_num_gt_sampled", mean[k + 4])
    storage.put_scalar(f"{prefix}iou_balanced_num_gt", mean[k + 5])
    return mean
