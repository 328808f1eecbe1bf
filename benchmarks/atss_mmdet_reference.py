"""
The baseline of benchmarks/bench_atss.py: MMDetection's ``ATSSAssigner.assign`` algorithm
(mmdet 3.x, ``mmdet/models/task_modules/assigners/atss_assigner.py``), re-implemented here
step by step as it is written there, without MMDetection installed and without its ignore /
DDOD branches:

1. the full anchors x GT IoU matrix (``BboxOverlaps2D``: union clamped at 1e-6);
2. the full anchors x GT center-distance matrix (``(p - g).pow(2).sum(-1).sqrt()``);
3. per level, ``topk(min(topk, R_l), dim=0, largest=False)`` of that level's rows;
4. mean + std of the candidates' IoUs (float32, along dim 0), ``IoU >= threshold``;
5. a Python loop over GTs to offset candidate indices into a flattened (G * R) layout,
   anchor centers expanded to (G * R), the ``> 0.01`` center-inside test;
6. a (G * R) matrix filled with -INF, positives' IoUs scattered in, transposed back to
   (R, G) and ``max(dim=1)``.

Only the algorithm is reproduced, for timing and memory comparisons and to check outputs;
``topk`` here is MMDetection's (per level, not multiplied by anchors per location: pass
``topk * A`` to compare with the authors' multi-anchor rule).
"""

from typing import List, Tuple

import torch

__all__ = ["mmdet_atss_assign"]

_INF = 100000000


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
