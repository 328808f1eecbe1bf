"""
RetinaNet with its anchors labelled by Adaptive Training Sample Selection (Zhang et al.,
"Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive Training Sample
Selection", CVPR 2020, arXiv 1912.02424): Detectron2's RetinaNet, same head, anchors, losses and
normaliser, whose IoU-threshold matcher is replaced by :class:`ATSSMatcher` - the paper's
"RetinaNet + ATSS" rows. It overrides ``label_anchors`` the way Detectron2's FCOS does and keeps
RetinaNet's output contract. See docs/atss.md.
"""

from typing import List, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from detectron2.structures import Boxes, Instances

from ..atss_grid import AnchorGridLevel, anchor_grid
from ..atss_matcher import ATSSMatcher
from .atss_labels import atss_label_anchors

__all__ = ["RetinaNetATSS"]


@META_ARCH_REGISTRY.register()
class RetinaNetATSS(RetinaNet):
    """
    RetinaNet whose anchors are labelled by ATSS instead of IoU thresholds: same head, anchors
    (9 per location), focal + smooth-L1 losses and normaliser as :class:`RetinaNet`. ATSS
    labels no anchor "ignore". The matcher takes ``topk * A`` candidates per level, ``A`` read
    from the anchor generator (``num_cell_anchors``) at every call, so it cannot disagree with
    the anchors. The matcher is given the anchors' grid (strides, feature sizes, offset), so
    it takes the grid path (docs/atss.md).

    yacs: ``META_ARCHITECTURE: "RetinaNetATSS"`` with ``MODEL.ATSS.TOPK`` / ``CENTER_MARGIN``;
    LazyConfig: RetinaNet's config with ``_target_`` swapped and ``anchor_matcher`` an
    ``L(ATSSMatcher)(topk=9, center_margin=0.01)``.
    """

    @configurable
    def __init__(self, *, anchor_matcher: ATSSMatcher, **kwargs):
        """
        Args:
            anchor_matcher (ATSSMatcher): labels the anchors.
            Other arguments are :class:`RetinaNet`'s.
        """
        if not isinstance(anchor_matcher, ATSSMatcher):
            raise ValueError(
                f"{type(self).__name__}: anchor_matcher must be an ATSSMatcher, got "
                f"{type(anchor_matcher).__name__}"
            )
        super().__init__(anchor_matcher=anchor_matcher, **kwargs)

    @classmethod
    def from_config(cls, cfg):
        matcher = _matcher_from_config(cfg)
        ret = super().from_config(cfg)
        ret["anchor_matcher"] = matcher
        return ret

    def forward_training(self, images, features, predictions, gt_instances):
        """:meth:`RetinaNet.forward_training`, with the anchors' grid passed to the matcher."""
        pred_logits, pred_anchor_deltas = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4]
        )
        anchors = self.anchor_generator(features)
        grid = anchor_grid(self.anchor_generator, features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances, grid)
        return self.losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes)

    @torch.no_grad()
    def label_anchors(
        self,
        anchors: List[Boxes],
        gt_instances: List[Instances],
        grid: Optional[Sequence[AnchorGridLevel]] = None,
    ):
        """
        Same contract as :meth:`RetinaNet.label_anchors`, with ATSS assignment
        (:func:`~d2_sampling.modeling.meta_arch.atss_labels.atss_label_anchors`, which also logs
        the ``atss/*`` statistics).

        Args:
            anchors (list[Boxes]): one (R_l, 4) per level.
            gt_instances (list[Instances]): N images, with ``gt_boxes`` and ``gt_classes``.
            grid (list[AnchorGridLevel] or None): the anchors' grid
                (:func:`~d2_sampling.modeling.atss_grid.anchor_grid`); None: the matcher's
                general path.

        Returns:
            list[Tensor]: N tensors (R,) int64: class ``0..K-1`` for foreground, ``K`` for
            background (never -1).
            list[Tensor]: N tensors (R, 4): the matched GT box of each anchor (meaningless for
            background).
        """
        # A, from the anchor generator. One int when it is the same on every level (RetinaNet's
        # head requires that), which then holds for any list of levels of those anchors.
        counts = self.anchor_generator.num_cell_anchors
        anchors_per_location = counts[0] if len(set(counts)) == 1 else list(counts)
        return atss_label_anchors(
            self.anchor_matcher, anchors, gt_instances, self.num_classes, anchors_per_location, grid
        )


def _matcher_from_config(cfg) -> ATSSMatcher:
    """
    The :class:`ATSSMatcher` of ``MODEL.ATSS``, its values checked against their yacs keys.

    Raises:
        ValueError: ``MODEL.ATSS.TOPK`` or ``MODEL.ATSS.CENTER_MARGIN`` out of range.
    """
    topk, center_margin = cfg.MODEL.ATSS.TOPK, cfg.MODEL.ATSS.CENTER_MARGIN
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"MODEL.ATSS.TOPK must be a positive int, got {topk!r}")
    if isinstance(center_margin, bool) or not isinstance(center_margin, (int, float)):
        raise ValueError(f"MODEL.ATSS.CENTER_MARGIN must be a number, got {center_margin!r}")
    if not center_margin >= 0.0:  # also rejects NaN
        raise ValueError(f"MODEL.ATSS.CENTER_MARGIN must be >= 0, got {center_margin!r}")
    return ATSSMatcher(topk=topk, center_margin=center_margin)
