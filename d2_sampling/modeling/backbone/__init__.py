from .fpn import build_retinanet_resnet_fpn_p5_backbone, fpn_p6p7_from_p5
from .tiny import (
    TinyNet,
    build_tiny_backbone,
    build_tiny_fpn_backbone,
    build_tiny_retinanet_fpn_backbone,
)

__all__ = [
    "TinyNet",
    "build_retinanet_resnet_fpn_p5_backbone",
    "build_tiny_backbone",
    "build_tiny_fpn_backbone",
    "build_tiny_retinanet_fpn_backbone",
    "fpn_p6p7_from_p5",
]
