from .ohem_roi_heads import OHEMROIHeads
from .iou_balanced_roi_heads import IoUBalancedROIHeads
