# IoU-balanced sampling of the RPN's anchors for LazyConfig: swap an RPN for IoUBalancedRPN with
# the same defaults as yacs (MODEL.RPN.IOU_BALANCED).
from detectron2.config import get_cfg

from d2_sampling.config import add_iou_balanced_rpn_config
from d2_sampling.modeling import IoUBalancedRPN


def iou_balanced_rpn_defaults():
    """``MODEL.RPN.IOU_BALANCED.*`` defaults as ``IoUBalancedRPN`` arguments (one source)."""
    cfg = get_cfg()
    add_iou_balanced_rpn_config(cfg)
    return {k.lower(): v for k, v in cfg.MODEL.RPN.IOU_BALANCED.items()}


def iou_balanced_rpn(rpn, **overrides):
    """
    Turn ``L(RPN)(...)`` into ``L(IoUBalancedRPN)(...)`` in place: same RPN,
    ``num_bins``/``floor_thr``/``floor_fraction``/``instance_balanced_positives`` set to the yacs
    defaults, then to ``overrides``. Returns it.
    """
    rpn._target_ = IoUBalancedRPN
    rpn.update(iou_balanced_rpn_defaults())
    rpn.update(overrides)
    return rpn
