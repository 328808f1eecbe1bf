"""
Model parts. Importing this module registers them with Detectron2's registries.

Pure algorithms (no nn.Module, no cfg) live in their own files and are re-exported here; thin
Detectron2 wrappers live in ``roi_heads/`` and ``meta_arch/``.
"""
from .backbone import TinyNet

# --- ATSS (issue 3) ---
from .atss_matcher import ATSSCandidates, ATSSMatcher
from .meta_arch import ATSS, ATSSHead, RetinaNetATSS

# --- OHEM (issue 4) ---
from .hard_example_mining import select_hard_examples
from .roi_heads import OHEMROIHeads, fast_rcnn_per_roi_losses

# --- IoU-balanced sampling (issue 5) ---
from .iou_balanced_sampling import (
    IoUBalancedSampler,
    NegativeBins,
    iou_balanced_subsample,
    iou_bin_index,
)
from .roi_heads import IoUBalancedROIHeads
