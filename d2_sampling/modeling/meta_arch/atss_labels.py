"""
Dense detectors' anchors (or points) labelled by ATSS, image by image, with the statistics the
meta-architectures log: the ``label_anchors`` of :class:`RetinaNetATSS`, :class:`ATSS` and
:class:`FCOSATSS`. See docs/atss.md.
"""

from typing import List, Optional, Sequence, Union

import torch
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

from ..atss_grid import AnchorGridLevel
from ..atss_matcher import ATSSMatcher

__all__ = ["atss_label_anchors"]


@torch.no_grad()
def atss_label_anchors(
    matcher: ATSSMatcher,
    anchors: List[Boxes],
    gt_instances: List[Instances],
    num_classes: int,
    anchors_per_location: Union[int, Sequence[int]] = 1,
    grid: Optional[Sequence[AnchorGridLevel]] = None,
):
    """
    RetinaNet's ``label_anchors`` contract with ATSS assignment. Nothing here waits for the
    device but the one transfer of the logged statistics per batch and, on the grid path, one
    check per image with a GT (whether a window needs the fallback).

    Args:
        matcher (ATSSMatcher): the assignment.
        anchors (list[Boxes]): one (R_l, 4) per level (for FCOS: the squares ATSS measures
            IoUs with, centered on the points).
        gt_instances (list[Instances]): N images, with ``gt_boxes`` and ``gt_classes``.
        num_classes (int): K, the background label.
        anchors_per_location (int or list[int]): ``A`` (see :class:`ATSSMatcher`).
        grid (list[AnchorGridLevel] or None): the anchors' grid; None: the general path.

    Returns:
        list[Tensor]: N tensors (R,) int64: class ``0..K-1`` for foreground, ``K`` for
        background (never -1).
        list[Tensor]: N tensors (R, 4): the matched GT box of each anchor (meaningless for
        background).

    Logs ``atss/num_pos_per_gt``, ``atss/gt_without_pos`` (fraction of GT boxes that got no
    positive anchor), ``atss/iou_threshold`` (mean over GTs of ``mean + std``),
    ``atss/num_candidates`` (per GT) and, on the grid path, ``atss/grid_fallback`` (fraction of
    (GT, level) pairs whose candidates came from the general path) to the event storage, when
    the batch has a GT.
    """
    num_anchors = sum(len(a) for a in anchors)
    device = anchors[0].tensor.device
    prepared = None  # the anchors as the matcher uses them, made once for the batch
    gt_labels, matched_gt_boxes = [], []
    # Per image: positives, GTs without one, threshold sum, fallback pairs; on the device until
    # the one transfer.
    stats = []
    num_gt, num_candidates = 0, 0
    for inst in gt_instances:
        if len(inst) == 0:
            gt_labels.append(
                torch.full((num_anchors,), num_classes, dtype=torch.int64, device=device)
            )
            matched_gt_boxes.append(torch.zeros((num_anchors, 4), device=device))
            continue
        if prepared is None:
            prepared = matcher.prepare_anchors(anchors, anchors_per_location, grid)
        candidates = matcher.select_candidates(inst.gt_boxes, prepared)
        matches, match_labels = matcher.assign(candidates)
        fg = match_labels.bool()
        gt_labels.append(torch.where(fg, inst.gt_classes[matches], num_classes))
        matched_gt_boxes.append(inst.gt_boxes.tensor[matches])

        pos_per_gt = torch.zeros(len(inst), dtype=torch.int64, device=device)
        pos_per_gt.scatter_add_(0, matches, fg.to(torch.int64))
        thresholds, fallback = candidates.thresholds, candidates.fallback
        dtype = thresholds.dtype  # float64 (float32 on MPS): counts stay exact
        stats.append(
            torch.stack(
                [
                    fg.sum().to(dtype),
                    (pos_per_gt == 0).sum().to(dtype),
                    thresholds.sum(),
                    fallback.sum().to(dtype) if fallback is not None else thresholds.new_zeros(()),
                ]
            )
        )
        num_gt += len(inst)
        num_candidates = candidates.indices.shape[1]  # the same for every image

    if num_gt > 0:
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
