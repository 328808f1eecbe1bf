from .tiny import TinyNet, build_tiny_backbone, build_tiny_fpn_backbone, build_tiny_retinanet_fpn_backbone
