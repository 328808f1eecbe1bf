# IoU-balanced sampling for LazyConfig: swap a StandardROIHeads for IoUBalancedROIHeads with the
# same defaults as yacs (MODEL.IOU_BALANCED, Libra R-CNN's sampler settings).
from detectron2.config import get_cfg

from d2_sampling.config import add_iou_balanced_config
from d2_sampling.modeling import IoUBalancedROIHeads


def iou_balanced_defaults():
    """``MODEL.IOU_BALANCED.*`` defaults as ``IoUBalancedROIHeads`` arguments (one source)."""
    cfg = get_cfg()
    add_iou_balanced_config(cfg)
    return {k.lower(): v for k, v in cfg.MODEL.IOU_BALANCED.items()}


def iou_balanced_roi_heads(roi_heads, **overrides):
    """
    Turn ``L(StandardROIHeads)(...)`` into ``L(IoUBalancedROIHeads)(...)`` in place: same heads,
    ``num_bins``/``floor_thr``/``floor_fraction``/``instance_balanced_positives`` set to the yacs
    defaults, then to ``overrides``. Returns it.
    """
    roi_heads._target_ = IoUBalancedROIHeads
    roi_heads.update(iou_balanced_defaults())
    roi_heads.update(overrides)
    return roi_heads
