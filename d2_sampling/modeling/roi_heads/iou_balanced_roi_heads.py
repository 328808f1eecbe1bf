"""
``IoUBalancedROIHeads``: ``StandardROIHeads`` whose ROI batch is drawn by Libra R-CNN's
IoU-balanced negative sampling and instance-balanced positive sampling (Pang et al., "Libra
R-CNN: Towards Balanced Learning for Object Detection", CVPR 2019, arXiv 1904.02701). The
algorithm is :class:`~d2_sampling.modeling.IoUBalancedSampler`; this module only labels the
proposals as Detectron2 does, carries each one's IoU and matched GT into the sampler, and logs
what the sampler reports it drew. Matching, box/mask heads, losses and inference are
Detectron2's, unchanged. Semantics and departures from the paper and MMDetection:
docs/iou_balanced.md.

The sampling itself is :class:`IoUBalancedSamplingMixin`, so that other heads (Cascade R-CNN,
a user's ``StandardROIHeads`` subclass) get it through ``with_roi_sampler`` (docs/samplers.md).
"""

from typing import List

import torch
from detectron2.config import configurable
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

from ..iou_balanced_logging import IoUBalancedSettings, log_sample_stats, sample_stats
from .balanced_l1_fast_rcnn import with_balanced_l1_predictors
from .labeling import label_proposals, select_training_rois

__all__ = ["IoUBalancedROIHeads", "IoUBalancedSamplingMixin", "iou_balanced_sampling_args"]

# How a bad value is named: its yacs key, and the argument for LazyConfig users.
_CONFIG_NAMES = {
    "num_bins": "MODEL.IOU_BALANCED.NUM_BINS (num_bins)",
    "floor_thr": "MODEL.IOU_BALANCED.FLOOR_THR (floor_thr)",
    "floor_fraction": "MODEL.IOU_BALANCED.FLOOR_FRACTION (floor_fraction)",
    "positive_fraction": "MODEL.ROI_HEADS.POSITIVE_FRACTION (positive_fraction)",
}


class IoUBalancedSamplingMixin(IoUBalancedSettings):
    """
    The IoU-balanced ROI sampler, for any ``StandardROIHeads`` subclass: put it before that
    class in the bases (``IoUBalancedROIHeads``), or give it to built heads with
    :func:`~d2_sampling.modeling.with_roi_sampler` (``IoUBalancedSampling``, Cascade R-CNN
    included). It replaces ``label_and_sample_proposals`` only: labelling, heads, losses and
    inference stay the host class's. :meth:`setup_iou_balanced_sampling` must be called once,
    after the host class's ``__init__``.
    """

    def setup_iou_balanced_sampling(
        self,
        *,
        num_bins: int = 3,
        floor_thr: float = -1.0,
        floor_fraction: float = 0.0,
        instance_balanced_positives: bool = True,
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

        Raises:
            ValueError: a bad value, naming its config key.
        """
        self.setup_sampler(
            num_bins, floor_thr, floor_fraction, instance_balanced_positives, _CONFIG_NAMES
        )

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
        out, stats = [], []
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            has_gt = len(targets_per_image) > 0
            labels = label_proposals(
                proposals_per_image, targets_per_image, self.proposal_matcher, self.num_classes
            )
            pos_idx, neg_idx, bins = self.sampler(
                labels.gt_classes,
                labels.ious,
                self.batch_size_per_image,
                self.positive_fraction,
                self.num_classes,
                gt_indices=(
                    labels.matched_idxs if self.instance_balanced_positives and has_gt else None
                ),
                return_bins=True,
            )
            sampled_idxs = torch.cat([pos_idx, neg_idx])
            out.append(
                select_training_rois(proposals_per_image, labels, sampled_idxs, targets_per_image)
            )
            stats.append(
                sample_stats(
                    labels.ious,
                    labels.matched_idxs,
                    pos_idx,
                    neg_idx,
                    bins,
                    len(targets_per_image),
                )
            )
        self._log_stats(stats)
        return out

    def _log_stats(self, stats):
        mean = log_sample_stats(stats, "roi_head/", self.num_bins, self.floor_thr >= 0)
        # Detectron2's own names too, so runs with and without the sampler plot on one chart.
        storage = get_event_storage()
        storage.put_scalar("roi_head/num_fg_samples", mean[self.num_bins + 2])
        storage.put_scalar("roi_head/num_bg_samples", mean[self.num_bins + 3])


@ROI_HEADS_REGISTRY.register()
class IoUBalancedROIHeads(IoUBalancedSamplingMixin, StandardROIHeads):
    """
    ``StandardROIHeads`` with Libra R-CNN's ROI sampler (``ROI_HEADS.NAME:
    "IoUBalancedROIHeads"``, or ``_target_`` in a LazyConfig).

    In training, each image's ``batch_size_per_image`` ROIs are drawn by the head's
    :class:`~d2_sampling.modeling.IoUBalancedSampler` (``self.sampler``, built once): negatives
    spread over ``num_bins`` equal-width IoU bins, positives spread over the GT instances.
    Everything else is ``StandardROIHeads``; with ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE:
    "balanced_l1"`` the box predictor is Libra R-CNN's balanced L1 one.

    Logged to ``EventStorage`` at every training step (means over the images of the batch):

    - ``roi_head/iou_balanced_neg_bin{k}``: sampled negatives in IoU bin ``k``, as the sampler
      reports them (the bins it used for that image), ``roi_head/iou_balanced_neg_floor`` with a
      floor set;
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
            num_bins, floor_thr, floor_fraction, instance_balanced_positives: see
                :meth:`IoUBalancedSamplingMixin.setup_iou_balanced_sampling`.
            kwargs: arguments of ``StandardROIHeads``.

        Raises:
            ValueError: a bad value, naming its config key.
        """
        super().__init__(**kwargs)
        self.setup_iou_balanced_sampling(
            num_bins=num_bins,
            floor_thr=floor_thr,
            floor_fraction=floor_fraction,
            instance_balanced_positives=instance_balanced_positives,
        )

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(iou_balanced_sampling_args(cfg))
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        """StandardROIHeads' box head; with ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE:
        "balanced_l1"`` its predictor is :class:`BalancedL1FastRCNNOutputLayers` (Libra R-CNN)."""
        return with_balanced_l1_predictors(cfg, super()._init_box_head(cfg, input_shape))


def iou_balanced_sampling_args(cfg):
    """``MODEL.IOU_BALANCED.*`` as the arguments of
    :meth:`IoUBalancedSamplingMixin.setup_iou_balanced_sampling`."""
    return dict(
        num_bins=cfg.MODEL.IOU_BALANCED.NUM_BINS,
        floor_thr=cfg.MODEL.IOU_BALANCED.FLOOR_THR,
        floor_fraction=cfg.MODEL.IOU_BALANCED.FLOOR_FRACTION,
        instance_balanced_positives=cfg.MODEL.IOU_BALANCED.INSTANCE_BALANCED_POSITIVES,
    )
