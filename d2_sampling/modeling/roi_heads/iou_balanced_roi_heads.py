"""
``IoUBalancedROIHeads``: ``StandardROIHeads`` whose ROI batch is drawn by Libra R-CNN's
IoU-balanced negative sampling and instance-balanced positive sampling (Pang et al.,
arXiv 1904.02701). The algorithm lives in :func:`d2_sampling.modeling.iou_balanced_subsample`;
this module only carries each proposal's IoU and matched GT into it and logs what was drawn.
Matching, box/mask heads, losses and inference are Detectron2's, unchanged.
"""

from typing import List

import torch

from detectron2.config import configurable
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Instances, pairwise_iou
from detectron2.utils.events import get_event_storage

from ..sampling import check_iou_balanced_args, iou_balanced_subsample, iou_bin_index

__all__ = ["IoUBalancedROIHeads"]


@ROI_HEADS_REGISTRY.register()
class IoUBalancedROIHeads(StandardROIHeads):
    """
    ``StandardROIHeads`` with Libra R-CNN's ROI sampler (``ROI_HEADS.NAME:
    "IoUBalancedROIHeads"``, or ``_target_`` in a LazyConfig).

    In training, each image's ``batch_size_per_image`` ROIs are drawn by
    :func:`~d2_sampling.modeling.iou_balanced_subsample`: negatives spread over ``num_bins``
    equal-width IoU bins, positives spread over the GT instances. Everything else is
    ``StandardROIHeads``.

    Logged to ``EventStorage`` at every training step (means over the images of the batch):

    - ``roi_head/iou_balanced_neg_bin{k}``: sampled negatives in IoU bin ``k`` (the bins the
      sampler used for that image), ``roi_head/iou_balanced_neg_floor`` with a floor set;
    - ``roi_head/iou_balanced_neg_mean_iou``: mean IoU of the sampled negatives (all images);
    - ``roi_head/iou_balanced_num_gt_sampled``: GTs with at least one sampled positive, and
      ``roi_head/iou_balanced_num_gt``: GTs per image, for reference;
    - Detectron2's ``roi_head/num_fg_samples`` and ``roi_head/num_bg_samples``.
    """

    @configurable
    def __init__(
        self,
        *,
        num_bins: int = 3,
        floor_thr: float = -1.0,
        floor_fraction: float = 0.0,
        instance_balanced_positives: bool = True,
        **kwargs,
    ):
        """
        Args:
            num_bins (int): K, the number of equal-width IoU bins of the negatives (>= 1).
            floor_thr (float): negatives below this IoU form a floor set sampled apart
                (< 1; negative: no floor set).
            floor_fraction (float): share of the negative quota drawn from the floor set,
                in [0, 1].
            instance_balanced_positives (bool): spread the positives evenly over GT instances
                (False: uniform positives, as Detectron2).
            kwargs: arguments of ``StandardROIHeads``.

        Raises:
            ValueError: a bad value, naming its config key.
        """
        super().__init__(**kwargs)
        check_iou_balanced_args(num_bins, floor_thr, floor_fraction, self.positive_fraction)
        self.num_bins = int(num_bins)
        self.floor_thr = float(floor_thr)
        self.floor_fraction = float(floor_fraction)
        self.instance_balanced_positives = bool(instance_balanced_positives)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(
            num_bins=cfg.MODEL.IOU_BALANCED.NUM_BINS,
            floor_thr=cfg.MODEL.IOU_BALANCED.FLOOR_THR,
            floor_fraction=cfg.MODEL.IOU_BALANCED.FLOOR_FRACTION,
            instance_balanced_positives=cfg.MODEL.IOU_BALANCED.INSTANCE_BALANCED_POSITIVES,
        )
        return ret

    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: List[Instances], targets: List[Instances]
    ) -> List[Instances]:
        """
        Same contract as ``ROIHeads.label_and_sample_proposals``: match proposals (plus the GT
        boxes, with ``proposal_append_gt``) to GTs, draw ``batch_size_per_image`` of them with
        the IoU-balanced sampler, and return them with ``gt_classes`` (``0..K-1``, background
        ``K``) and the other ``gt_*`` fields of their matched GT.

        Args:
            proposals (list[Instances]): N images' proposals, with ``proposal_boxes``.
            targets (list[Instances]): N images' annotations, with ``gt_boxes`` and
                ``gt_classes`` (possibly zero instances).

        Returns:
            list[Instances]: N images' sampled proposals.
        """
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        bg = self.num_classes
        low = max(self.floor_thr, 0.0)
        out, stats = [], []
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            has_gt = len(targets_per_image) > 0
            match_quality_matrix = pairwise_iou(
                targets_per_image.gt_boxes, proposals_per_image.proposal_boxes
            )
            matched_idxs, matched_labels = self.proposal_matcher(match_quality_matrix)
            if has_gt:
                # The matcher's matches are the argmax over GTs: this is each proposal's max IoU.
                ious = match_quality_matrix.gather(0, matched_idxs[None]).squeeze(0)
                gt_classes = targets_per_image.gt_classes[matched_idxs]
                gt_classes[matched_labels == 0] = bg
                gt_classes[matched_labels == -1] = -1
            else:
                ious = torch.zeros(len(proposals_per_image), device=matched_idxs.device)
                gt_classes = torch.full_like(matched_idxs, bg)
            pos_idx, neg_idx = iou_balanced_subsample(
                gt_classes,
                ious,
                self.batch_size_per_image,
                self.positive_fraction,
                bg,
                num_bins=self.num_bins,
                floor_thr=self.floor_thr,
                floor_fraction=self.floor_fraction,
                gt_indices=matched_idxs if self.instance_balanced_positives and has_gt else None,
            )
            sampled_idxs = torch.cat([pos_idx, neg_idx])

            proposals_per_image = proposals_per_image[sampled_idxs]
            proposals_per_image.gt_classes = gt_classes[sampled_idxs]
            if has_gt:
                sampled_targets = matched_idxs[sampled_idxs]
                for trg_name, trg_value in targets_per_image.get_fields().items():
                    if trg_name.startswith("gt_") and not proposals_per_image.has(trg_name):
                        proposals_per_image.set(trg_name, trg_value[sampled_targets])
            out.append(proposals_per_image)
            stats.append(
                self._sample_stats(
                    ious,
                    gt_classes == bg,
                    pos_idx,
                    neg_idx,
                    matched_idxs,
                    low,
                    len(targets_per_image),
                )
            )
        self._log_stats(stats)
        return out

    def _sample_stats(self, ious, is_neg, pos_idx, neg_idx, matched_idxs, low, num_gt):
        """
        One image's statistics, as a (K + 6,) float tensor, kept on the device until
        ``_log_stats`` moves the whole step's at once: sampled negatives per bin (K) and in the
        floor set, sum of their IoUs, #positives, #negatives, #GTs with a sampled positive, #GTs.
        """
        k = self.num_bins
        neg_ious = ious[neg_idx]
        # The bins the sampler used: over [low, highest IoU among this image's negatives].
        high = ious[is_neg].max() if neg_idx.numel() > 0 else ious.new_zeros(())
        bins = iou_bin_index(neg_ious, k, low, high)
        if self.floor_thr >= 0:
            bins.masked_fill_(neg_ious < self.floor_thr, k)
        counts = torch.bincount(bins, minlength=k + 1).to(ious.dtype)
        gt_hit = torch.zeros(num_gt, dtype=torch.bool, device=ious.device)
        gt_hit[matched_idxs[pos_idx]] = True
        sizes = ious.new_tensor([pos_idx.numel(), neg_idx.numel()])
        return torch.cat(
            [
                counts,
                neg_ious.sum()[None],
                sizes,
                gt_hit.sum()[None].to(ious.dtype),
                ious.new_tensor([num_gt]),
            ]
        )

    def _log_stats(self, stats):
        k = self.num_bins
        per_image = torch.stack(stats).cpu()  # (N, K + 6), one host sync per step
        mean = per_image.mean(0).tolist()
        iou_sum, num_neg = per_image[:, k + 1].sum().item(), per_image[:, k + 3].sum().item()
        storage = get_event_storage()
        storage.put_scalar("roi_head/num_fg_samples", mean[k + 2])
        storage.put_scalar("roi_head/num_bg_samples", mean[k + 3])
        for i in range(k):
            storage.put_scalar(f"roi_head/iou_balanced_neg_bin{i}", mean[i])
        if self.floor_thr >= 0:
            storage.put_scalar("roi_head/iou_balanced_neg_floor", mean[k])
        if num_neg > 0:
            storage.put_scalar("roi_head/iou_balanced_neg_mean_iou", iou_sum / num_neg)
        storage.put_scalar("roi_head/iou_balanced_num_gt_sampled", mean[k + 4])
        storage.put_scalar("roi_head/iou_balanced_num_gt", mean[k + 5])
