"""
Reference ATSS assignments (Zhang et al., "Bridging the Gap Between Anchor-based and Anchor-free
Detection via Adaptive Training Sample Selection", CVPR 2020, arXiv 1912.02424) that
``tests/modeling/test_atss_matcher.py`` and ``benchmarks/bench_atss.py`` compare
:class:`d2_sampling.modeling.ATSSMatcher` against; see docs/atss.md.

- :func:`reference_atss`: slow and obviously correct, written straight from Algorithm 1 of the
  paper with plain Python loops, with the documented tie rules (equal distances: lower anchor
  index; equal IoUs between GTs claiming one anchor: lower GT index). Coordinates are float32
  numpy scalars, operation by operation, because that is the dtype of the boxes; the IoU
  statistics are float64, as ``ATSSMatcher`` computes them.
- :func:`mmdet_atss_assign`: MMDetection's ``ATSSAssigner.assign`` algorithm (mmdet 3.x,
  ``mmdet/models/task_modules/assigners/atss_assigner.py``) re-implemented step by step as that
  algorithm is described there, without MMDetection installed and without its ignore / DDOD
  branches: the benchmark's baseline for time and memory, and a second check of the outputs.
- :func:`boundary_tied_gts`: which GTs have an ambiguous candidate set (a distance tie at the
  k-th place), where ``torch.topk``-based implementations may legitimately differ from ours.
"""

import math
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["boundary_tied_gts", "mmdet_atss_assign", "reference_atss"]

F32 = np.float32
_INF = 100000000


# ------------------------------------------------------------------------------------------
# The paper's algorithm, plain loops.
# ------------------------------------------------------------------------------------------
def _center(box):
    return (F32(box[0]) + F32(box[2])) / F32(2.0), (F32(box[1]) + F32(box[3])) / F32(2.0)


def _iou(a, g):
    """IoU in float32, union clamped at 1e-6 (as MMDetection's bbox_overlaps)."""
    a = [F32(v) for v in a]
    g = [F32(v) for v in g]
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_g = (g[2] - g[0]) * (g[3] - g[1])
    w = max(min(a[2], g[2]) - max(a[0], g[0]), F32(0))
    h = max(min(a[3], g[3]) - max(a[1], g[1]), F32(0))
    overlap = w * h
    union = max(area_a + area_g - overlap, F32(1e-6))
    return overlap / union


def reference_atss(
    gt_boxes: Sequence[Sequence[float]],
    anchors_per_level: Sequence[Sequence[Sequence[float]]],
    topk: int,
    anchors_per_location: Union[int, Sequence[int]] = 1,
    center_margin: float = 0.01,
) -> Tuple[List[int], List[int]]:
    """
    Args:
        gt_boxes: G boxes [x0, y0, x1, y1].
        anchors_per_level: per level, a list of anchor boxes.
        topk, anchors_per_location, center_margin: as ``ATSSMatcher`` (``anchors_per_location``
            one int for all levels or one per level).

    Returns:
        (matches, labels): two lists over the concatenated anchors; matches is the GT index of
        foreground anchors and 0 for background, labels 1 / 0.
    """
    if isinstance(anchors_per_location, int):
        anchors_per_location = [anchors_per_location] * len(anchors_per_level)
    anchors = [a for level in anchors_per_level for a in level]
    level_ranges = []
    start = 0
    for level in anchors_per_level:
        level_ranges.append(range(start, start + len(level)))
        start += len(level)
    centers = [_center(a) for a in anchors]
    margin = F32(center_margin)

    # claims[anchor] = list of (iou, gt index) of the GTs for which the anchor is positive
    claims = [[] for _ in anchors]
    for g_idx, g in enumerate(gt_boxes):
        gx, gy = _center(g)
        # Step 1: per level, the k x A anchors nearest to the GT center.
        candidates = []
        for rng, per_location in zip(level_ranges, anchors_per_location):
            dists = []
            for i in rng:
                dx = centers[i][0] - gx
                dy = centers[i][1] - gy
                dists.append((dx * dx + dy * dy, i))
            dists.sort()  # by distance, then by index
            candidates += [i for _, i in dists[: min(topk * per_location, len(dists))]]
        if not candidates:
            continue
        # Step 2: threshold = mean + standard deviation of the candidates' IoUs.
        ious = [_iou(anchors[i], g) for i in candidates]
        mean = sum(float(v) for v in ious) / len(ious)
        if len(ious) > 1:
            var = sum((float(v) - mean) ** 2 for v in ious) / (len(ious) - 1)
        else:
            var = 0.0
        threshold = mean + math.sqrt(var)
        # Step 3: positive iff IoU >= threshold and the center is inside the GT.
        for i, iou in zip(candidates, ious):
            cx, cy = centers[i]
            inside = min(cx - F32(g[0]), cy - F32(g[1]), F32(g[2]) - cx, F32(g[3]) - cy)
            if float(iou) >= threshold and inside > margin:
                claims[i].append((float(iou), g_idx))

    # Step 4: an anchor claimed by several GTs goes to the highest IoU (then the lower index).
    matches, labels = [], []
    for c in claims:
        if c:
            best = max(iou for iou, _ in c)
            matches.append(min(g for iou, g in c if iou == best))
            labels.append(1)
        else:
            matches.append(0)
            labels.append(0)
    return matches, labels


# ------------------------------------------------------------------------------------------
# MMDetection's algorithm, as its assigner computes it (full matrices, loop over GTs).
# ------------------------------------------------------------------------------------------
def _bbox_overlaps(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(N, 4) x (M, 4) -> (N, M) IoU, as MMDetection's ``bbox_overlaps`` (mode 'iou')."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    union = torch.max(union, union.new_tensor([eps]))
    return inter / union


def mmdet_atss_assign(
    gt_boxes: torch.Tensor, priors: torch.Tensor, num_level_priors: List[int], topk: int = 9
) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    MMDetection's steps:

    1. the full anchors x GT IoU matrix (union clamped at 1e-6);
    2. the full anchors x GT center-distance matrix (``(p - g).pow(2).sum(-1).sqrt()``);
    3. per level, ``topk(min(topk, R_l), dim=0, largest=False)`` of that level's rows;
    4. mean + std of the candidates' IoUs (float32, along dim 0), ``IoU >= threshold``;
    5. a Python loop over GTs to offset candidate indices into a flattened (G * R) layout,
       anchor centers expanded to (G * R), the ``> 0.01`` center-inside test;
    6. a (G * R) matrix filled with -INF, positives' IoUs scattered in, transposed back to
       (R, G) and ``max(dim=1)``.

    ``topk`` is MMDetection's (per level, no notion of anchors per location): pass ``topk * A``
    to compare with the authors' multi-anchor rule.

    Args:
        gt_boxes (Tensor): (G, 4) XYXY.
        priors (Tensor): (R, 4) XYXY, all levels concatenated.
        num_level_priors (list[int]): anchors per level.
        topk (int): candidates per level.

    Returns:
        assigned_gt_inds (Tensor): (R,) int64, 0 background, i + 1 for GT i (MMDetection's
            convention).
        max_overlaps (Tensor): (R,) IoU with the assigned GT, -INF for background.
    """
    num_gt, num_priors = gt_boxes.size(0), priors.size(0)
    overlaps = _bbox_overlaps(priors, gt_boxes)  # (R, G)
    assigned = overlaps.new_full((num_priors,), 0, dtype=torch.long)
    if num_gt == 0 or num_priors == 0:
        return assigned, overlaps.new_zeros((num_priors,))

    gt_points = torch.stack(
        ((gt_boxes[:, 0] + gt_boxes[:, 2]) / 2.0, (gt_boxes[:, 1] + gt_boxes[:, 3]) / 2.0), dim=1
    )
    prior_cx = (priors[:, 0] + priors[:, 2]) / 2.0
    prior_cy = (priors[:, 1] + priors[:, 3]) / 2.0
    prior_points = torch.stack((prior_cx, prior_cy), dim=1)
    distances = (prior_points[:, None, :] - gt_points[None, :, :]).pow(2).sum(-1).sqrt()  # (R, G)

    level_candidates = []
    start = 0
    for n in num_level_priors:
        end = start + n
        k = min(topk, n)
        _, idx = distances[start:end, :].topk(k, dim=0, largest=False)
        level_candidates.append(idx + start)
        start = end
    candidate_idxs = torch.cat(level_candidates, dim=0)  # (C, G)

    candidate_overlaps = overlaps[candidate_idxs, torch.arange(num_gt)]
    threshold = candidate_overlaps.mean(0) + candidate_overlaps.std(0)
    is_pos = candidate_overlaps >= threshold[None, :]

    for g in range(num_gt):
        candidate_idxs[:, g] += g * num_priors
    flat_cx = prior_cx.view(1, -1).expand(num_gt, num_priors).contiguous().view(-1)
    flat_cy = prior_cy.view(1, -1).expand(num_gt, num_priors).contiguous().view(-1)
    candidate_idxs = candidate_idxs.view(-1)
    left = flat_cx[candidate_idxs].view(-1, num_gt) - gt_boxes[:, 0]
    top = flat_cy[candidate_idxs].view(-1, num_gt) - gt_boxes[:, 1]
    right = gt_boxes[:, 2] - flat_cx[candidate_idxs].view(-1, num_gt)
    bottom = gt_boxes[:, 3] - flat_cy[candidate_idxs].view(-1, num_gt)
    is_in_gt = torch.stack([left, top, right, bottom], dim=1).min(dim=1)[0] > 0.01
    is_pos = is_pos & is_in_gt

    overlaps_inf = torch.full_like(overlaps, -_INF).t().contiguous().view(-1)
    index = candidate_idxs.view(-1)[is_pos.view(-1)]
    overlaps_inf[index] = overlaps.t().contiguous().view(-1)[index]
    overlaps_inf = overlaps_inf.view(num_gt, -1).t()
    max_overlaps, argmax = overlaps_inf.max(dim=1)
    fg = max_overlaps != -_INF
    assigned[fg] = argmax[fg] + 1
    return assigned, max_overlaps


# ------------------------------------------------------------------------------------------
# Where candidate sets are ambiguous.
# ------------------------------------------------------------------------------------------
def boundary_tied_gts(
    gt_boxes: torch.Tensor,
    priors: torch.Tensor,
    num_level_priors: List[int],
    topk: int,
    include_sqrt: bool = True,
) -> torch.Tensor:
    """
    GTs whose k-th and (k+1)-th nearest anchor centers are exactly as far on some level (with
    more than ``topk`` anchors): their candidate set depends on the tie rule.

    Args:
        gt_boxes (Tensor): (G, 4) XYXY.
        priors (Tensor): (R, 4) XYXY, all levels concatenated.
        num_level_priors (list[int]): anchors per level.
        topk (int): candidates per level (``k x A``).
        include_sqrt (bool): also count ties of the square-rooted distances (the ranking of
            the authors' code and MMDetection, where ``sqrt`` can merge two distances).

    Returns:
        Tensor: (G,) bool.
    """
    cx, cy = (priors[:, 0] + priors[:, 2]) / 2, (priors[:, 1] + priors[:, 3]) / 2
    gcx, gcy = (gt_boxes[:, 0] + gt_boxes[:, 2]) / 2, (gt_boxes[:, 1] + gt_boxes[:, 3]) / 2
    tied = torch.zeros(len(gt_boxes), dtype=torch.bool)
    start = 0
    for n in num_level_priors:
        if n > topk and len(gt_boxes) > 0:
            d2 = (cx[start : start + n, None] - gcx[None]) ** 2 + (
                cy[start : start + n, None] - gcy[None]
            ) ** 2
            for d in (d2, d2.sqrt()) if include_sqrt else (d2,):
                v = d.topk(topk + 1, dim=0, largest=False).values
                tied |= v[topk - 1] == v[topk]
        start += n
    return tied
