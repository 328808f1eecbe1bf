"""
A small convolutional backbone for CPU-sized experiments, trained from scratch.

Stock ResNets are too slow to train from scratch on two CPU cores in minutes; this VGG-style
net (two 3x3 convs per stage, GroupNorm) keeps Detectron2's ``res2..res5`` naming and strides
(4, 8, 16, 32), so every stock FPN/RPN/ROI-head/RetinaNet config works on top of it unchanged.
"""

from typing import List

import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from torch import nn

from .fpn import fpn_p6p7_from_p5

__all__ = [
    "TinyNet",
    "build_tiny_backbone",
    "build_tiny_fpn_backbone",
    "build_tiny_retinanet_fpn_backbone",
]


class TinyNet(Backbone):
    """
    Stem (stride 2) and four stages (strides 4, 8, 16, 32), each ``conv3x3/2 -> conv3x3``.

    Outputs a dict ``{"res2": (N, C2, H/4, W/4), ..., "res5": (N, C5, H/32, W/32)}``.
    """

    def __init__(
        self,
        *,
        channels: List[int],
        stem_channels: int = 16,
        norm: str = "GN",
        out_features=("res2", "res3", "res4", "res5"),
        in_channels: int = 3,
    ):
        super().__init__()
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"MODEL.TINY.CHANNELS must be 4 positive ints, got {channels}")
        if stem_channels < 1:
            raise ValueError(f"MODEL.TINY.STEM_CHANNELS must be positive, got {stem_channels}")

        def make_norm(c):
            if not norm:
                return None
            if norm == "GN":  # Detectron2's "GN" is 32 groups; too many for 16-channel layers
                return nn.GroupNorm(min(32, max(1, c // 4)), c)
            return get_norm(norm, c)

        def conv(cin, cout, stride):
            c = Conv2d(
                cin,
                cout,
                3,
                stride=stride,
                padding=1,
                bias=not norm,
                norm=make_norm(cout),
                activation=F.relu,
            )
            nn.init.kaiming_normal_(c.weight, mode="fan_out", nonlinearity="relu")
            if c.bias is not None:
                nn.init.zeros_(c.bias)
            return c

        self.stem = conv(in_channels, stem_channels, 2)
        self.stage_names = ["res2", "res3", "res4", "res5"]
        cin = stem_channels
        self._out_feature_channels, self._out_feature_strides = {}, {}
        for i, (name, cout) in enumerate(zip(self.stage_names, channels)):
            self.add_module(name, nn.Sequential(conv(cin, cout, 2), conv(cout, cout, 1)))
            self._out_feature_channels[name] = cout
            self._out_feature_strides[name] = 2 ** (i + 2)
            cin = cout
        for f in out_features:
            if f not in self.stage_names:
                raise ValueError(f"Unknown TinyNet output {f!r}; available: {self.stage_names}")
        self._out_features = list(out_features)

    def forward(self, x):
        out = {}
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                out[name] = x
        return out

    def output_shape(self):
        return {
            f: ShapeSpec(
                channels=self._out_feature_channels[f], stride=self._out_feature_strides[f]
            )
            for f in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_tiny_backbone(cfg, input_shape: ShapeSpec):
    return TinyNet(
        channels=list(cfg.MODEL.TINY.CHANNELS),
        stem_channels=cfg.MODEL.TINY.STEM_CHANNELS,
        norm=cfg.MODEL.TINY.NORM,
        out_features=cfg.MODEL.RESNETS.OUT_FEATURES,
        in_channels=input_shape.channels,
    )


@BACKBONE_REGISTRY.register()
def build_tiny_fpn_backbone(cfg, input_shape: ShapeSpec):
    """TinyNet + FPN with P6 by max-pool (as ``build_resnet_fpn_backbone``)."""
    return FPN(
        bottom_up=build_tiny_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_tiny_retinanet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """TinyNet + FPN with P6/P7 from P5 (TinyNet's C5 is too thin to feed them)."""
    return fpn_p6p7_from_p5(cfg, build_tiny_backbone(cfg, input_shape))
