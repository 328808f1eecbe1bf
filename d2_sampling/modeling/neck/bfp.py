"""
The balanced feature pyramid of Libra R-CNN (Pang et al., CVPR 2019, arXiv 1904.02701,
Section 3.2): the pyramid's levels are rescaled to one intermediate level and averaged, the
average is refined (an embedded-Gaussian non-local block), then rescaled back and added to every
level. A :class:`~detectron2.modeling.Backbone` over another backbone's pyramid (an FPN): same
output names, strides and channels. Semantics against the paper and MMDetection's ``BFP``:
docs/libra_rcnn.md.
"""

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

__all__ = ["BalancedFeaturePyramid", "NonLocal2d", "build_bfp_backbone"]

REFINE_TYPES = ("non_local", "conv", "none")


class NonLocal2d(nn.Module):
    """
    Embedded-Gaussian non-local block (Wang et al., arXiv 1711.07971) as Libra R-CNN refines
    with it (mmcv's ``NonLocal2d`` with ``reduction=1, use_scale=False``): ``x + W_z(softmax(
    theta(x)^T phi(x)) g(x))``, 1x1 convolutions, ``W_z`` initialised to zero so that the block
    starts as the identity.
    """

    def __init__(self, channels: int, inter_channels: Optional[int] = None, use_scale=False):
        """
        Args:
            channels (int): input and output channels.
            inter_channels (int): channels of theta / phi / g (default: ``channels``).
            use_scale (bool): divide the pairwise logits by ``sqrt(inter_channels)``.
        """
        super().__init__()
        inter = inter_channels or channels
        self.use_scale = use_scale
        self.inter_channels = inter
        self.g = nn.Conv2d(channels, inter, 1)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.conv_out = nn.Conv2d(inter, channels, 1)
        for conv in (self.g, self.theta, self.phi):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        n, _, h, w = x.shape
        g_x = self.g(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        theta_x = self.theta(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        phi_x = self.phi(x).flatten(2)  # (N, C', HW)
        pairwise = torch.matmul(theta_x, phi_x)  # (N, HW, HW)
        if self.use_scale:
            pairwise = pairwise / self.inter_channels**0.5
        pairwise = pairwise.softmax(dim=-1)
        y = torch.matmul(pairwise, g_x).transpose(1, 2).reshape(n, self.inter_channels, h, w)
        return x + self.conv_out(y)


class BalancedFeaturePyramid(Backbone):
    """
    ``bottom``'s feature pyramid, balanced: for the levels ``in_features`` (finest first),

    1. each is resized to the size of level ``refine_level`` (finer ones by adaptive max
       pooling, coarser ones by nearest interpolation) and the resized maps averaged;
    2. the average is refined (``refine_type``: "non_local", "conv" a 3x3 convolution, or
       "none");
    3. the refined map is resized back to each level (nearest interpolation to the finer ones,
       adaptive max pooling to the coarser ones) and added to it.

    Outputs: every output of ``bottom`` (the others unchanged), same shapes.
    """

    @configurable
    def __init__(
        self,
        bottom: Backbone,
        *,
        in_features: Optional[List[str]] = None,
        refine_level: int = 2,
        refine_type: str = "non_local",
    ):
        """
        Args:
            bottom (Backbone): a backbone whose outputs include a pyramid of equal channels.
            in_features (list[str] or None): the levels to balance, finest first (None: all of
                ``bottom``'s outputs, in stride order).
            refine_level (int): index in ``in_features`` of the level everything is resized
                to (Libra R-CNN: 2, i.e. P4 of P2-P6).
            refine_type (str): "non_local" (Libra R-CNN), "conv" or "none".

        Raises:
            ValueError: an unknown feature, unequal channels, a level out of range or an
                unknown refine type, naming the argument.
        """
        super().__init__()
        shapes = bottom.output_shape()
        if in_features is None:
            in_features = sorted(shapes, key=lambda f: shapes[f].stride)
        in_features = list(in_features)
        unknown = [f for f in in_features if f not in shapes]
        if not in_features or unknown:
            raise ValueError(
                f"BalancedFeaturePyramid: in_features {in_features} must be outputs of the "
                f"bottom backbone ({sorted(shapes)})"
            )
        strides = [shapes[f].stride for f in in_features]
        if strides != sorted(strides) or len(set(strides)) != len(strides):
            raise ValueError(
                f"BalancedFeaturePyramid: in_features {in_features} must be ordered finest "
                f"first (strides {strides})"
            )
        channels = {shapes[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(
                f"BalancedFeaturePyramid: in_features {in_features} must have equal channels, "
                f"got {[shapes[f].channels for f in in_features]}"
            )
        if isinstance(refine_level, bool) or not isinstance(refine_level, int):
            raise ValueError(
                f"BalancedFeaturePyramid: refine_level must be an int, got {refine_level!r}"
            )
        if not 0 <= refine_level < len(in_features):
            raise ValueError(
                f"BalancedFeaturePyramid: refine_level must be in [0, {len(in_features) - 1}] "
                f"(an index into in_features), got {refine_level!r}"
            )
        if refine_type not in REFINE_TYPES:
            raise ValueError(
                f"BalancedFeaturePyramid: refine_type must be one of {REFINE_TYPES}, got "
                f"{refine_type!r}"
            )
        (c,) = channels
        self.bottom = bottom
        self.in_features = in_features
        self.refine_level = refine_level
        self.refine_type = refine_type
        if refine_type == "non_local":
            self.refine = NonLocal2d(c)
        elif refine_type == "conv":
            self.refine = nn.Conv2d(c, c, 3, padding=1)
        else:
            self.refine = None
        self._out_features = list(bottom._out_features)
        self._out_feature_strides = {f: shapes[f].stride for f in self._out_features}
        self._out_feature_channels = {f: shapes[f].channels for f in self._out_features}

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        bfp = cfg.MODEL.BFP
        if bfp.REFINE_TYPE not in REFINE_TYPES:
            raise ValueError(
                f"MODEL.BFP.REFINE_TYPE must be one of {REFINE_TYPES}, got {bfp.REFINE_TYPE!r}"
            )
        if bfp.BACKBONE == "build_bfp_backbone" or bfp.BACKBONE not in BACKBONE_REGISTRY:
            raise ValueError(
                f"MODEL.BFP.BACKBONE must name a registered backbone builder other than "
                f"build_bfp_backbone, got {bfp.BACKBONE!r}"
            )
        bottom = BACKBONE_REGISTRY.get(bfp.BACKBONE)(cfg, input_shape)
        names = list(bfp.IN_FEATURES) or None
        if names is not None and any(f not in bottom.output_shape() for f in names):
            raise ValueError(
                f"MODEL.BFP.IN_FEATURES {names} must be outputs of {bfp.BACKBONE} "
                f"({sorted(bottom.output_shape())})"
            )
        levels = len(names) if names is not None else len(bottom.output_shape())
        if isinstance(bfp.REFINE_LEVEL, bool) or not 0 <= bfp.REFINE_LEVEL < levels:
            raise ValueError(
                f"MODEL.BFP.REFINE_LEVEL must be in [0, {levels - 1}], got {bfp.REFINE_LEVEL!r}"
            )
        return dict(
            bottom=bottom,
            in_features=names,
            refine_level=bfp.REFINE_LEVEL,
            refine_type=bfp.REFINE_TYPE,
        )

    @property
    def size_divisibility(self) -> int:
        return self.bottom.size_divisibility

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return self.bottom.padding_constraints

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            x (Tensor): (N, C, H, W) images.

        Returns:
            dict[str, Tensor]: ``bottom``'s outputs, the ``in_features`` balanced.
        """
        return self.balance(self.bottom(x))[0]

    def balance(self, outs: Dict[str, torch.Tensor]):
        """
        The three steps on ``bottom``'s outputs, with the balanced semantic feature before and
        after its refinement (for tools that show them; ``forward`` keeps the first value).

        Args:
            outs (dict[str, Tensor]): ``bottom``'s outputs, (N, C, H_l, W_l) per level.

        Returns:
            tuple: the balanced outputs (dict[str, Tensor], as ``forward``), the integrated
            feature (N, C, H, W) at the refine level, and the refined one (same shape).
        """
        feats = [outs[f] for f in self.in_features]
        size = feats[self.refine_level].shape[-2:]
        gathered = [
            F.adaptive_max_pool2d(f, size)
            if i < self.refine_level
            else F.interpolate(f, size=size, mode="nearest")
            for i, f in enumerate(feats)
        ]
        integrated = sum(gathered) / len(gathered)
        bsf = self.refine(integrated) if self.refine is not None else integrated
        result = dict(outs)
        for i, (name, f) in enumerate(zip(self.in_features, feats)):
            if i < self.refine_level:
                residual = F.interpolate(bsf, size=f.shape[-2:], mode="nearest")
            else:
                residual = F.adaptive_max_pool2d(bsf, f.shape[-2:])
            result[name] = f + residual
        return result, integrated, bsf


@BACKBONE_REGISTRY.register()
def build_bfp_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """
    ``MODEL.BACKBONE.NAME: "build_bfp_backbone"``: the backbone ``MODEL.BFP.BACKBONE`` builds
    (e.g. "build_resnet_fpn_backbone"), balanced by :class:`BalancedFeaturePyramid` with
    ``MODEL.BFP``.
    """
    return BalancedFeaturePyramid(cfg, input_shape)
