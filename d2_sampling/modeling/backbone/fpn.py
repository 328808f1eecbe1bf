"""FPN builders whose extra levels P6/P7 are computed from P5 (not from C5)."""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.modeling.backbone.resnet import build_resnet_backbone

__all__ = ["fpn_p6p7_from_p5", "build_retinanet_resnet_fpn_p5_backbone"]


def fpn_p6p7_from_p5(cfg, bottom_up):
    """``FPN`` over ``bottom_up`` with ``LastLevelP6P7`` fed by P5 (``MODEL.FPN.*`` keys)."""
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(out_channels, out_channels, in_feature="p5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_retinanet_resnet_fpn_p5_backbone(cfg, input_shape: ShapeSpec):
    """
    ResNet-FPN with P6/P7 computed from P5 (``in_feature="p5"``), as the ATSS paper's model
    (the authors' ``USE_C5: False``, MMDetection's ``add_extra_convs="on_output"``) and
    Detectron2's FCOS; Detectron2's RetinaNet builder computes them from C5.
    """
    return fpn_p6p7_from_p5(cfg, build_resnet_backbone(cfg, input_shape))
