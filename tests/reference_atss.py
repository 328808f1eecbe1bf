"""
A slow, obviously-correct ATSS assignment, written straight from Algorithm 1 of the paper
(Zhang et al., arXiv 1912.02424) with plain Python loops, to check ``ATSSMatcher`` against.

Arithmetic on coordinates is float32 (numpy scalars), operation by operation, because that is
the dtype of the boxes; the IoU statistics are float64, as documented for ``ATSSMatcher``.
Tie rules are the documented ones: equal distances -> lower anchor index; equal IoUs between
GTs claiming one anchor -> lower GT index.
"""

import math
from typing import List, Sequence, Tuple

import numpy as np

F32 = np.float32


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
    anchors_per_location: int = 1,
    center_margin: float = 0.01,
) -> Tuple[List[int], List[int]]:
    """
    Args:
        gt_boxes: G boxes [x0, y0, x1, y1].
        anchors_per_level: per level, a list of anchor boxes.
        topk, anchors_per_location, center_margin: as ``ATSSMatcher``.

    Returns:
        (matches, labels): two lists over the concatenated anchors; matches is the GT index of
        foreground anchors and 0 for background, labels 1 / 0.
    """
    anchors = [a for level in anchors_per_level for a in level]
    level_ranges = []
    start = 0
    for level in anchors_per_level:
        level_ranges.append(range(start, start + len(level)))
        start += len(level)
    centers = [_center(a) for a in anchors]
    k = topk * anchors_per_location
    margin = F32(center_margin)

    # claims[anchor] = list of (iou, gt index) of the GTs for which the anchor is positive
    claims = [[] for _ in anchors]
    for g_idx, g in enumerate(gt_boxes):
        gx, gy = _center(g)
        # Step 1: per level, the k anchors nearest to the GT center.
        candidates = []
        for rng in level_ranges:
            dists = []
            for i in rng:
                dx = centers[i][0] - gx
                dy = centers[i][1] - gy
                dists.append((dx * dx + dy * dy, i))
            dists.sort()  # by distance, then by index
            candidates += [i for _, i in dists[: min(k, len(dists))]]
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
