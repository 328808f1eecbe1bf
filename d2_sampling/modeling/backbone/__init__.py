from .efficientnet_lite import (
    EfficientNetLite,
    build_efficientnet_lite_backbone,
    build_efficientnet_lite_fpn_backbone,
    build_efficientnet_lite_retinanet_fpn_backbone,
)
from .efficientnet_lite_weights import (  # also registers the "efficientnet://" path prefix
    EfficientNetLiteHandler,
    convert_reference_state_dict,
    imagenet_checkpoint_file,
)
from .fpn import build_retinanet_resnet_fpn_p5_backbone, fpn_p6p7_from_p5
from .tiny import (
    TinyNet,
    build_tiny_backbone,
    build_tiny_fpn_backbone,
    build_tiny_retinanet_fpn_backbone,
)

__all__ = [
    "EfficientNetLite",
    "EfficientNetLiteHandler",
    "TinyNet",
    "build_efficientnet_lite_backbone",
    "build_efficientnet_lite_fpn_backbone",
    "build_efficientnet_lite_retinanet_fpn_backbone",
    "build_retinanet_resnet_fpn_p5_backbone",
    "build_tiny_backbone",
    "build_tiny_fpn_backbone",
    "build_tiny_retinanet_fpn_backbone",
    "convert_reference_state_dict",
    "fpn_p6p7_from_p5",
    "imagenet_checkpoint_file",
]
