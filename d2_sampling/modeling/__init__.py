"""
Model parts. Importing this module registers them with Detectron2's registries.

Pure algorithms (no nn.Module, no cfg) live in their own files and are re-exported here; thin
Detectron2 wrappers live in ``roi_heads/`` and ``meta_arch/``, backbones in ``backbone/``.
"""

from .atss_grid import AnchorGridLevel, anchor_grid
from .atss_matcher import ATSSAnchors, ATSSCandidates, ATSSMatcher
from .backbone import TinyNet
from .balanced_l1_loss import balanced_l1_loss
from .hard_example_mining import select_hard_examples
from .iou_balanced_sampling import (
    IoUBalancedSampler,
    NegativeBins,
    iou_balanced_subsample,
    iou_bin_index,
)
from .meta_arch import ATSS, FCOSATSS, ATSSHead, ConfigurableFCOS, RetinaNetATSS
from .neck import BalancedFeaturePyramid, NonLocal2d, build_bfp_backbone
from .proposal_generator import IoUBalancedRPN
from .roi_heads import (
    ROI_SAMPLER_REGISTRY,
    BalancedL1FastRCNNOutputLayers,
    IoUBalancedROIHeads,
    IoUBalancedSampling,
    OHEMROIHeads,
    OHEMSampling,
    RandomSampling,
    SampledROIHeads,
    fast_rcnn_per_roi_losses,
    sampled_roi_heads,
    with_roi_sampler,
)

__all__ = [
    # ATSS
    "ATSSCandidates",
    "ATSSMatcher",
    "ATSSAnchors",
    "AnchorGridLevel",
    "anchor_grid",
    "ATSS",
    "ATSSHead",
    "RetinaNetATSS",
    "ConfigurableFCOS",
    "FCOSATSS",
    # OHEM
    "select_hard_examples",
    "fast_rcnn_per_roi_losses",
    "OHEMROIHeads",
    # IoU-balanced sampling
    "IoUBalancedSampler",
    "NegativeBins",
    "iou_balanced_subsample",
    "iou_bin_index",
    "IoUBalancedROIHeads",
    "IoUBalancedRPN",
    # the sampler as a choice, for any StandardROIHeads subclass
    "ROI_SAMPLER_REGISTRY",
    "RandomSampling",
    "IoUBalancedSampling",
    "OHEMSampling",
    "SampledROIHeads",
    "sampled_roi_heads",
    "with_roi_sampler",
    # Libra R-CNN's other two parts
    "balanced_l1_loss",
    "BalancedL1FastRCNNOutputLayers",
    "BalancedFeaturePyramid",
    "NonLocal2d",
    "build_bfp_backbone",
    # backbones
    "TinyNet",
]
