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
from detectron2.utils.events import get_event_storage

from ..atss_grid import AnchorGridLevel, anchor_grid
from ..atss_matcher import ATSSMatcher

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
        Same contract as :meth:`RetinaNet.label_anchors`, with ATSS assignment. Nothing here
        waits for the device but the one transfer of the logged statistics per batch and, on
        the grid path, one check per image with a GT (whether a window needs the fallback).

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

        Logs ``atss/num_pos_per_gt``, ``atss/gt_without_pos`` (fraction of GT boxes that got no
        positive anchor), ``atss/iou_threshold`` (mean over GTs of ``mean + std``),
        ``atss/num_candidates`` (per GT) and, on the grid path, ``atss/grid_fallback`` (fraction
        of (GT, level) pairs whose candidates came from the general path) to the event storage,
        when the batch has a GT.
        """
        # A, from the anchor generator. One int when it is the same on every level (RetinaNet's
        # head requires that), which then holds for any list of levels of those anchors.
        counts = self.anchor_generator.num_cell_anchors
        anchors_per_location = counts[0] if len(set(counts)) == 1 else list(counts)
        num_anchors = sum(len(a) for a in anchors)
        device = anchors[0].tensor.device
        prepared = None  # the anchors as the matcher uses them, made once for the batch
        gt_labels, matched_gt_boxes = [], []
        # Per image: positives, GTs without one, threshold sum, fallback pairs; on the device
        # until the one transfer.
        stats = []
        num_gt, num_candidates = 0, 0
        for inst in gt_instances:
            if len(inst) == 0:
                gt_labels.append(
                    torch.full((num_anchors,), self.num_classes, dtype=torch.int64, device=device)
                )
                matched_gt_boxes.append(torch.zeros((num_anchors, 4), device=device))
                continue
            if prepared is None:
                prepared = self.anchor_matcher.prepare_anchors(anchors, anchors_per_location, grid)
            candidates = self.anchor_matcher.select_candidates(inst.gt_boxes, prepared)
            matches, match_labels = self.anchor_matcher.assign(candidates)
            fg = match_labels.bool()
            gt_labels.append(torch.where(fg, inst.gt_classes[matches], self.num_classes))
            matched_gt_boxes.append(inst.gt_boxes.tensor[matches])

            pos_per_gt = torch.zeros(len(inst), dtype=torch.int64, device=device)
            pos_per_gt.scatter_add_(0, matches, fg.to(torch.int64))
            thresholds = candidates.thresholds
            fallback = candidates.fallback
            stats.append(
                torch.stack(
                    [
                        fg.sum().to(thresholds.dtype),
                        (pos_per_gt == 0).sum().to(thresholds.dtype),
                        thresholds.sum(),
                        fallback.sum().to(thresholds.dtype)
                        if fallback is not None
                        else thresholds.new_tensor(-1.0),
                    ]
                )
            )
            num_gt += len(inst)
            num_candidates = candidates.indices.shape[1]  # the same for every image

        if num_gt > 0:
            # float64 (float32 on MPS): counts stay exact.
            num_pos, num_without_pos, threshold_sum, fallback_pairs = (
                torch.stack(stats).sum(dim=0).tolist()
            )
            storage = get_event_storage()
            storage.put_scalar("atss/num_pos_per_gt", num_pos / num_gt)
            storage.put_scalar("atss/gt_without_pos", num_without_pos / num_gt)
            storage.put_scalar("atss/iou_threshold", threshold_sum / num_gt)
            storage.put_scalar("atss/num_candidates", num_candidates)
            if prepared.plans is not None:
                storage.put_scalar("atss/grid_fallback", fallback_pairs / (num_gt * len(anchors)))
        return gt_labels, matched_gt_boxes


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
