"""
RetinaNet with its anchors labelled by Adaptive Training Sample Selection (Zhang et al.,
"Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive Training Sample
Selection", CVPR 2020, arXiv 1912.02424): Detectron2's RetinaNet, same head, anchors, losses and
normaliser, whose IoU-threshold matcher is replaced by :class:`ATSSMatcher` - the paper's
"RetinaNet + ATSS" rows. It overrides ``label_anchors`` the way Detectron2's FCOS does and keeps
RetinaNet's output contract. See docs/atss.md.
"""

from typing import List

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

from ..atss_matcher import ATSSMatcher

__all__ = ["RetinaNetATSS"]


@META_ARCH_REGISTRY.register()
class RetinaNetATSS(RetinaNet):
    """
    RetinaNet whose anchors are labelled by ATSS instead of IoU thresholds: same head, anchors
    (9 per location), focal + smooth-L1 losses and normaliser as :class:`RetinaNet`. ATSS
    labels no anchor "ignore". The matcher takes ``topk * A`` candidates per level, ``A`` read
    from the anchor generator (``num_cell_anchors``) at every call, so it cannot disagree with
    the anchors.

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

    @torch.no_grad()
    def label_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]):
        """
        Same contract as :meth:`RetinaNet.label_anchors`, with ATSS assignment. Nothing here
        waits for the device but the one transfer of the logged statistics per batch.

        Args:
            anchors (list[Boxes]): one (R_l, 4) per level.
            gt_instances (list[Instances]): N images, with ``gt_boxes`` and ``gt_classes``.

        Returns:
            list[Tensor]: N tensors (R,) int64: class ``0..K-1`` for foreground, ``K`` for
            background (never -1).
            list[Tensor]: N tensors (R, 4): the matched GT box of each anchor (meaningless for
            background).

        Logs ``atss/num_pos_per_gt``, ``atss/gt_without_pos`` (fraction of GT boxes that got no
        positive anchor), ``atss/iou_threshold`` (mean over GTs of ``mean + std``) and
        ``atss/num_candidates`` (per GT) to the event storage, when the batch has a GT.
        """
        # A, from the anchor generator. One int when it is the same on every level (RetinaNet's
        # head requires that), which then holds for any list of levels of those anchors.
        counts = self.anchor_generator.num_cell_anchors
        anchors_per_location = counts[0] if len(set(counts)) == 1 else list(counts)
        num_anchors = sum(len(a) for a in anchors)
        device = anchors[0].tensor.device
        gt_labels, matched_gt_boxes = [], []
        # Statistics stay on the device, summed image after image, until the one transfer.
        num_gt, num_candidates = 0, 0
        num_pos = num_without_pos = threshold_sum = None
        for inst in gt_instances:
            if len(inst) == 0:
                gt_labels.append(
                    torch.full((num_anchors,), self.num_classes, dtype=torch.int64, device=device)
                )
                matched_gt_boxes.append(torch.zeros((num_anchors, 4), device=device))
                continue
            candidates = self.anchor_matcher.select_candidates(
                inst.gt_boxes, anchors, anchors_per_location
            )
            matches, match_labels = self.anchor_matcher.assign(candidates)
            fg = match_labels.bool()
            gt_labels.append(torch.where(fg, inst.gt_classes[matches], self.num_classes))
            matched_gt_boxes.append(inst.gt_boxes.tensor[matches])

            pos_per_gt = torch.zeros(len(inst), dtype=torch.int64, device=device)
            pos_per_gt.scatter_add_(0, matches, fg.to(torch.int64))
            stats = (fg.sum(), (pos_per_gt == 0).sum(), candidates.thresholds.sum())
            if num_pos is None:
                num_pos, num_without_pos, threshold_sum = stats
            else:
                num_pos = num_pos + stats[0]
                num_without_pos = num_without_pos + stats[1]
                threshold_sum = threshold_sum + stats[2]
            num_gt += len(inst)
            num_candidates = candidates.indices.shape[1]  # the same for every image

        if num_gt > 0:
            dtype = threshold_sum.dtype  # float64 (float32 on MPS): counts stay exact
            num_pos, num_without_pos, threshold_sum = torch.stack(
                [num_pos.to(dtype), num_without_pos.to(dtype), threshold_sum]
            ).tolist()
            storage = get_event_storage()
            storage.put_scalar("atss/num_pos_per_gt", num_pos / num_gt)
            storage.put_scalar("atss/gt_without_pos", num_without_pos / num_gt)
            storage.put_scalar("atss/iou_threshold", threshold_sum / num_gt)
            storage.put_scalar("atss/num_candidates", num_candidates)
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
