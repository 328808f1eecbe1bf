"""
FCOS with ATSS assignment: the ATSS paper's anchor-free row (Zhang et al., CVPR 2020, arXiv
1912.02424, Table 3: FCOS 37.8 AP -> 38.6 with center sampling -> 39.2 with ATSS, R50 1x).
Detectron2's FCOS (head, losses, inference and output contract unchanged) whose center-sampling
and scale-range assignment is replaced by :class:`ATSSMatcher`: each location is given, for
the assignment only, a square anchor of ``8 x stride`` centered on it, as the paper does; the
regression stays FCOS's point-to-edge distances. See docs/atss.md.
"""

from typing import List, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.structures import Boxes, Instances

from ..atss_grid import AnchorGridLevel, anchor_grid
from ..atss_matcher import ATSSMatcher
from .atss_labels import atss_label_anchors
from .fcos import ConfigurableFCOS, fcos_arguments

__all__ = ["FCOSATSS"]


@META_ARCH_REGISTRY.register()
class FCOSATSS(ConfigurableFCOS):
    """
    FCOS whose locations are labelled by ATSS. yacs: ``META_ARCHITECTURE: "FCOSATSS"`` with
    ``MODEL.ATSS.TOPK`` / ``CENTER_MARGIN`` and ``MODEL.FCOS.ATSS_ANCHOR_SCALE``; LazyConfig:
    FCOS's config with ``_target_`` swapped, ``anchor_matcher`` an ``L(ATSSMatcher)(...)`` and
    ``atss_anchor_scale``.
    """

    @configurable
    def __init__(self, *, anchor_matcher: ATSSMatcher, atss_anchor_scale: float = 8.0, **kwargs):
        """
        Args:
            anchor_matcher (ATSSMatcher): labels the locations.
            atss_anchor_scale (float): side of each location's square anchor for ATSS, in units
                of its level's stride (paper: 8).
            Other arguments are :class:`FCOS`'s (``center_sampling_radius`` is unused).
        """
        if not isinstance(anchor_matcher, ATSSMatcher):
            raise ValueError(
                f"FCOSATSS: anchor_matcher must be an ATSSMatcher, got "
                f"{type(anchor_matcher).__name__}"
            )
        scale = float(atss_anchor_scale)
        if not scale > 0:
            raise ValueError(f"FCOSATSS: atss_anchor_scale must be > 0, got {atss_anchor_scale!r}")
        super().__init__(**kwargs)
        self.anchor_matcher = anchor_matcher
        self.atss_anchor_scale = scale
        # The same locations as FCOS's points (strides, offset), with 8S squares.
        points = self.anchor_generator
        self.atss_anchor_generator = DefaultAnchorGenerator(
            sizes=[[scale * s] for s in points.strides],
            aspect_ratios=[1.0],
            strides=list(points.strides),
            offset=points.offset,
        )

    @classmethod
    def from_config(cls, cfg):
        from .retinanet_atss import _matcher_from_config

        scale = cfg.MODEL.FCOS.ATSS_ANCHOR_SCALE
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"MODEL.FCOS.ATSS_ANCHOR_SCALE must be a number > 0, got {scale!r}")
        ret = fcos_arguments(cfg)
        ret.update(anchor_matcher=_matcher_from_config(cfg), atss_anchor_scale=scale)
        return ret

    def forward_training(self, images, features, predictions, gt_instances):
        """:meth:`FCOS.forward_training`, the locations labelled by ATSS on their squares."""
        pred_logits, pred_anchor_deltas, pred_centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        points = self.anchor_generator(features)
        squares = self.atss_anchor_generator(features)
        grid = anchor_grid(self.atss_anchor_generator, features)
        gt_labels, gt_boxes = self.label_anchors(squares, gt_instances, grid)
        return self.losses(
            points, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_centerness
        )

    @torch.no_grad()
    def label_anchors(
        self,
        anchors: List[Boxes],
        gt_instances: List[Instances],
        grid: Optional[Sequence[AnchorGridLevel]] = None,
    ):
        """
        :meth:`FCOS.label_anchors`'s contract (no ignored location), assigned by ATSS.

        Args:
            anchors (list[Boxes]): per level, the (R_l, 4) squares of ``atss_anchor_scale x
                stride`` centered on the locations (``atss_anchor_generator(features)``).
            gt_instances (list[Instances]): N images, with ``gt_boxes`` and ``gt_classes``.
            grid (list[AnchorGridLevel] or None): their grid; None: the general path.

        Returns:
            list[Tensor], list[Tensor]: per image, (R,) labels (``K`` background) and (R, 4)
            matched GT boxes; logs the ``atss/*`` statistics.
        """
        return atss_label_anchors(
            self.anchor_matcher, anchors, gt_instances, self.num_classes, 1, grid
        )
