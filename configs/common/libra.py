# Libra R-CNN's balanced feature pyramid and balanced L1 loss for LazyConfig, with the same
# defaults as yacs (MODEL.BFP, MODEL.ROI_BOX_HEAD.BALANCED_L1): see docs/libra_rcnn.md.
from detectron2.config import LazyCall as L
from detectron2.config import get_cfg

from d2_sampling.config import add_libra_config
from d2_sampling.modeling import BalancedFeaturePyramid, BalancedL1FastRCNNOutputLayers


def _defaults():
    cfg = get_cfg()
    add_libra_config(cfg)
    return cfg


def balanced_feature_pyramid(backbone, **overrides):
    """``L(BalancedFeaturePyramid)`` over ``backbone`` (an FPN's LazyCall), yacs defaults."""
    bfp = _defaults().MODEL.BFP
    args = dict(
        in_features=list(bfp.IN_FEATURES) or None,
        refine_level=bfp.REFINE_LEVEL,
        refine_type=bfp.REFINE_TYPE,
    )
    args.update(overrides)
    return L(BalancedFeaturePyramid)(bottom=backbone, **args)


def balanced_l1_box_predictor(box_predictor, **overrides):
    """Turn ``L(FastRCNNOutputLayers)(...)`` into the balanced-L1 predictor in place."""
    b = _defaults().MODEL.ROI_BOX_HEAD.BALANCED_L1
    box_predictor._target_ = BalancedL1FastRCNNOutputLayers
    box_predictor.update(
        box_reg_loss_type="balanced_l1",
        balanced_l1_alpha=b.ALPHA,
        balanced_l1_gamma=b.GAMMA,
        balanced_l1_beta=b.BETA,
    )
    box_predictor.update(overrides)
    return box_predictor
