"""ROI heads (registered in Detectron2's ``ROI_HEADS_REGISTRY`` on import) and their helpers."""

from .balanced_l1_fast_rcnn import (
    BalancedL1FastRCNNOutputLayers,
    check_box_loss_config,
    with_balanced_l1_predictors,
)
from .fast_rcnn_losses import fast_rcnn_per_roi_losses
from .iou_balanced_roi_heads import IoUBalancedROIHeads, IoUBalancedSamplingMixin
from .labeling import ProposalLabels, add_gt_fields, label_proposals, select_training_rois
from .ohem_roi_heads import OHEMROIHeads, OHEMSamplingMixin
from .sampled_roi_heads import (
    ROI_SAMPLER_REGISTRY,
    IoUBalancedSampling,
    OHEMSampling,
    RandomSampling,
    SampledROIHeads,
    build_roi_sampler,
    check_roi_sampler_config,
    sampled_roi_heads,
    with_roi_sampler,
)

__all__ = [
    "BalancedL1FastRCNNOutputLayers",
    "check_box_loss_config",
    "with_balanced_l1_predictors",
    "IoUBalancedROIHeads",
    "IoUBalancedSamplingMixin",
    "OHEMROIHeads",
    "OHEMSamplingMixin",
    "ROI_SAMPLER_REGISTRY",
    "RandomSampling",
    "IoUBalancedSampling",
    "OHEMSampling",
    "SampledROIHeads",
    "build_roi_sampler",
    "check_roi_sampler_config",
    "sampled_roi_heads",
    "with_roi_sampler",
    "ProposalLabels",
    "add_gt_fields",
    "fast_rcnn_per_roi_losses",
    "label_proposals",
    "select_training_rois",
]
