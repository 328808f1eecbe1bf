"""
The anchor assignment of Adaptive Training Sample Selection (ATSS): Zhang, Chi, Yao, Lei, Li,
"Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive Training Sample
Selection", CVPR 2020, arXiv 1912.02424 (Algorithm 1). For each ground-truth box it takes the
anchors nearest to its center on every pyramid level as candidates, sets its IoU threshold to
the mean plus the standard deviation of the candidates' IoUs, and makes positive the candidates
at or above it whose centers lie inside the box; an anchor positive for several boxes goes to
the one it overlaps most. Pure torch, no module, no config, any device, no host
synchronisation. Semantics against the paper, the authors' code and MMDetection (ties,
precision, memory, edge cases): docs/atss.md.
"""

import numbers
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import torch
from detectron2.structures import Boxes

__all__ = ["ATSSMatcher", "ATSSCandidates"]

# Integer type with the bit width of each float type whose non-negative values can be ranked
# through their bit patterns (see _nearest_k). float64 has no room left for an index.
_BITS_AS_INT = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


@dataclass
class ATSSCandidates:
    """
    What ATSS saw for each ground-truth box of one image (for assignment, logging, plotting).

    Attributes:
        indices (Tensor): (G, C) int64, the candidate anchors of each GT as indices into the
            concatenated anchors, level by level, nearest first within a level (equal
            distances: lower index first). ``C`` is the same for every GT:
            ``sum_l min(topk * A_l, R_l)``, ``A_l`` the anchors per location on level ``l``.
        ious (Tensor): (G, C) IoU of each candidate with its GT, dtype of the boxes.
        thresholds (Tensor): (G,) float64 (float32 on MPS), ``mean + std`` of each GT's
            candidate IoUs.
        is_positive (Tensor): (G, C) bool, IoU ``>=`` threshold and center inside the GT by
            more than the margin.
        level_sizes (list[int]): number of anchors ``R_l`` on each level.
    """

    indices: torch.Tensor
    ious: torch.Tensor
    thresholds: torch.Tensor
    is_positive: torch.Tensor
    level_sizes: List[int]

    @property
    def num_anchors(self) -> int:
        return int(sum(self.level_sizes))


class ATSSMatcher:
    """
    Label the anchors of one image foreground / background with ATSS.

    Unlike Detectron2's :class:`~detectron2.modeling.matcher.Matcher`, which takes a (G, R)
    match-quality matrix, ATSS needs the geometry: this takes the GT boxes and the anchors
    level by level (centers for the nearest-k step, levels for per-level candidates, boxes for
    IoUs), plus the number of anchors the generator puts at each location. Its outputs follow
    ``Matcher``'s convention, without the ignore label.

    Example::

        matcher = ATSSMatcher(topk=9)
        anchors = anchor_generator(features)  # list[Boxes], one per level
        matches, match_labels = matcher(gt_boxes, anchors, anchor_generator.num_cell_anchors)
    """

    def __init__(
        self, topk: int = 9, *, center_margin: float = 0.01, max_chunk_elements: int = 1 << 20
    ):
        """
        Args:
            topk (int): ``k``, candidates per GT and per level (times the anchors per
                location), nearest centers first. Paper: 9.
            center_margin (float): a positive's center must be inside its GT by more than this
                many pixels on every side. Authors' code: 0.01.
            max_chunk_elements (int): largest distance matrix (GTs x anchors of one level)
                built at once; bounds the extra memory, does not change results.

        Raises:
            ValueError: a value out of range, naming the argument.
        """
        if not _is_positive_int(topk):
            raise ValueError(f"ATSSMatcher: topk must be a positive int, got {topk!r}")
        if not _is_number(center_margin) or not center_margin >= 0.0:  # also rejects NaN
            raise ValueError(
                f"ATSSMatcher: center_margin must be a number >= 0, got {center_margin!r}"
            )
        if not _is_positive_int(max_chunk_elements):
            raise ValueError(
                "ATSSMatcher: max_chunk_elements must be a positive int, "
                f"got {max_chunk_elements!r}"
            )
        self.topk = topk
        self.center_margin = float(center_margin)
        self.max_chunk_elements = max_chunk_elements

    def __repr__(self):
        return f"ATSSMatcher(topk={self.topk}, center_margin={self.center_margin})"

    def __call__(
        self,
        gt_boxes: Boxes,
        anchors: Union[Sequence[Boxes], Boxes],
        anchors_per_location: Union[int, Sequence[int]] = 1,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            gt_boxes (Boxes): (G, 4) ground-truth boxes of one image, XYXY absolute.
            anchors (list[Boxes]): one ``Boxes`` (R_l, 4) per pyramid level, in the order the
                anchor generator returns them (a single ``Boxes`` is one level).
            anchors_per_location (int or list[int]): ``A``, the anchors the generator puts at
                each location (``anchor_generator.num_cell_anchors``: one per level, or one int
                for all levels); ``topk * A_l`` candidates are taken on level ``l``, as in the
                authors' code. 1 for the ATSS detector, 9 for RetinaNet's anchors.

        Returns:
            matches (Tensor): (R,) int64, R = sum_l R_l; for a foreground anchor the index of
                its GT in ``gt_boxes``; 0 for background (keeps ``gt_boxes[matches]`` valid,
                means nothing).
            match_labels (Tensor): (R,) int8, 1 foreground, 0 background; never -1 (ATSS
                ignores nothing).

        Raises:
            ValueError: ``anchors_per_location`` not positive, or not one per level.
        """
        return self.assign(self.select_candidates(gt_boxes, anchors, anchors_per_location))

    @torch.no_grad()
    def select_candidates(
        self,
        gt_boxes: Boxes,
        anchors: Union[Sequence[Boxes], Boxes],
        anchors_per_location: Union[int, Sequence[int]] = 1,
    ) -> ATSSCandidates:
        """
        Steps 1-3: candidates, IoU thresholds and per-GT positives (before resolving anchors
        claimed by several GTs). Same arguments as ``__call__``.

        Returns:
            ATSSCandidates
        """
        if isinstance(anchors, Boxes):
            anchors = [anchors]
        level_sizes = [len(a) for a in anchors]
        level_k = self._candidates_per_level(anchors_per_location, len(level_sizes))
        gt = gt_boxes.tensor
        num_gt = gt.shape[0]
        all_anchors = torch.cat([a.tensor for a in anchors]) if anchors else gt.new_zeros((0, 4))
        device, dtype = all_anchors.device, all_anchors.dtype
        if all_anchors.shape[0] == 0:
            return ATSSCandidates(
                indices=torch.zeros((num_gt, 0), dtype=torch.int64, device=device),
                ious=gt.new_zeros((num_gt, 0)),
                thresholds=torch.zeros((num_gt,), dtype=_stat_dtype(device), device=device),
                is_positive=torch.zeros((num_gt, 0), dtype=torch.bool, device=device),
                level_sizes=level_sizes,
            )
        gt = gt.to(dtype)

        # Centers as (x0 + x1) / 2, exactly as the references compute them, so that rankings
        # agree bit for bit.
        anchor_cx = (all_anchors[:, 0] + all_anchors[:, 2]) / 2.0
        anchor_cy = (all_anchors[:, 1] + all_anchors[:, 3]) / 2.0
        gt_cx = (gt[:, 0] + gt[:, 2]) / 2.0
        gt_cy = (gt[:, 1] + gt[:, 3]) / 2.0

        candidates = []
        start = 0
        for size, k in zip(level_sizes, level_k):
            if size > 0 and num_gt > 0:
                idx = _nearest_k(
                    anchor_cx[start : start + size],
                    anchor_cy[start : start + size],
                    gt_cx,
                    gt_cy,
                    min(k, size),
                    self.max_chunk_elements,
                )
                candidates.append(idx + start)
            start += size
        if candidates:
            indices = torch.cat(candidates, dim=1)  # (G, C)
        else:  # no GT: still (0, C)
            num_cand = sum(min(k, size) for size, k in zip(level_sizes, level_k))
            indices = torch.zeros((num_gt, num_cand), dtype=torch.int64, device=device)

        if num_gt == 0:
            return ATSSCandidates(
                indices=indices,
                ious=all_anchors.new_zeros(indices.shape),
                thresholds=torch.zeros((0,), dtype=_stat_dtype(device), device=device),
                is_positive=torch.zeros(indices.shape, dtype=torch.bool, device=device),
                level_sizes=level_sizes,
            )
        cand = all_anchors[indices]  # (G, C, 4)
        ious = _iou_rowwise(cand, gt)  # (G, C)

        num_cand = indices.shape[1]
        # The statistics in float64: with float32, the mean of equal IoUs can round above
        # their common value and drop every positive of that GT.
        ious64 = ious.to(_stat_dtype(device))
        mean = ious64.mean(dim=1)
        if num_cand > 1:
            std = ious64.std(dim=1)  # unbiased, as torch.Tensor.std in both references
        else:
            std = torch.zeros_like(mean)  # a single candidate: 0, not NaN
        thresholds = mean + std
        is_positive = ious64 >= thresholds[:, None]

        # Center strictly inside the GT, by more than the margin on all four sides.
        cx, cy = anchor_cx[indices], anchor_cy[indices]
        inside = torch.minimum(
            torch.minimum(cx - gt[:, 0:1], cy - gt[:, 1:2]),
            torch.minimum(gt[:, 2:3] - cx, gt[:, 3:4] - cy),
        )
        is_positive &= inside > self.center_margin
        return ATSSCandidates(
            indices=indices,
            ious=ious,
            thresholds=thresholds,
            is_positive=is_positive,
            level_sizes=level_sizes,
        )

    @staticmethod
    @torch.no_grad()
    def assign(candidates: ATSSCandidates) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Step 4: give each anchor positive for several GTs to the GT with the highest IoU (ties:
        lower GT index), label everything else background.

        Args:
            candidates (ATSSCandidates): from :meth:`select_candidates`.

        Returns:
            matches, match_labels: as ``__call__``.
        """
        num_anchors = candidates.num_anchors
        indices, is_positive = candidates.indices, candidates.is_positive
        num_gt = indices.shape[0]
        device = indices.device
        flat = indices.reshape(-1)
        # Fixed shapes throughout (no nonzero, no boolean indexing): nothing waits for the
        # device. Non-positive entries take part as -inf IoU / GT index num_gt, which never win.
        iou = torch.where(is_positive, candidates.ious, float("-inf"))
        best = iou.new_full((num_anchors,), float("-inf"))
        best.scatter_reduce_(0, flat, iou.reshape(-1), reduce="amax")
        wins = is_positive & (iou == best[indices])
        gt_index = torch.arange(num_gt, device=device)[:, None].expand_as(indices)
        claims = torch.where(wins, gt_index, num_gt)
        winner = torch.full((num_anchors,), num_gt, dtype=torch.int64, device=device)
        winner.scatter_reduce_(0, flat, claims.reshape(-1), reduce="amin")
        foreground = winner < num_gt
        matches = torch.where(foreground, winner, 0)
        return matches, foreground.to(torch.int8)

    def _candidates_per_level(self, anchors_per_location, num_levels: int) -> List[int]:
        """``topk * A_l`` for each level; checks ``anchors_per_location``."""
        if _is_positive_int(anchors_per_location):
            per_level = [anchors_per_location] * num_levels
        elif isinstance(anchors_per_location, (list, tuple)):
            per_level = list(anchors_per_location)
        else:
            per_level = []
        if len(per_level) != num_levels or not all(_is_positive_int(a) for a in per_level):
            raise ValueError(
                "ATSSMatcher: anchors_per_location must be a positive int or one positive int "
                f"per level ({num_levels} levels), got {anchors_per_location!r}"
            )
        return [self.topk * a for a in per_level]


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _stat_dtype(device: torch.device) -> torch.dtype:
    """float64 for the IoU statistics (see ``select_candidates``); MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _nearest_k(
    anchor_cx: torch.Tensor,
    anchor_cy: torch.Tensor,
    gt_cx: torch.Tensor,
    gt_cy: torch.Tensor,
    k: int,
    max_chunk_elements: int,
) -> torch.Tensor:
    """
    Indices of the ``k`` anchors nearest (squared L2 between centers) to each GT center,
    nearest first; equal distances go to the lower anchor index, also at the k-th place.

    Args:
        anchor_cx, anchor_cy (Tensor): (R,) anchor centers of one level.
        gt_cx, gt_cy (Tensor): (G,) GT centers.
        k (int): 1 <= k <= R.
        max_chunk_elements (int): at most about this many distances are held at once (>= R).

    Returns:
        Tensor: (G, k) int64 indices into the level.
    """
    num_anchors, num_gt = anchor_cx.shape[0], gt_cx.shape[0]
    device = anchor_cx.device
    bits_as_int = _BITS_AS_INT.get(anchor_cx.dtype)
    index = torch.arange(num_anchors, device=device)
    out = torch.empty((num_gt, k), dtype=torch.int64, device=device)
    step = max(1, max_chunk_elements // num_anchors)
    for s in range(0, num_gt, step):
        e = min(s + step, num_gt)
        # Squared distances (G_chunk, R), built in place: two buffers of the chunk's size.
        dist = anchor_cx[None, :] - gt_cx[s:e, None]
        dist.square_()
        dy = anchor_cy[None, :] - gt_cy[s:e, None]
        dist.add_(dy.square_())
        del dy
        if bits_as_int is None:  # float64: a stable sort ranks by (distance, index)
            out[s:e] = dist.argsort(dim=1, stable=True)[:, :k]
            continue
        # torch.topk orders ties arbitrarily. A non-negative float's bit pattern, read as an
        # integer, orders like the float, so (bits << 32) | index is a unique int64 key that
        # orders by distance, then index: one topk gives the documented tie rule, with no
        # data-dependent branch (and so no wait for the device).
        key = dist.view(bits_as_int).to(torch.int64)
        del dist
        key.bitwise_left_shift_(32).bitwise_or_(index)
        out[s:e] = key.topk(k, dim=1, largest=False, sorted=True).indices
    return out


def _iou_rowwise(cand: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """
    IoU of each GT with each of its own candidates.

    Written with the same floating-point operations, in the same order, as MMDetection's
    ``bbox_overlaps`` (union clamped at 1e-6), so values agree bit for bit.

    Args:
        cand (Tensor): (G, C, 4) candidate anchors of each GT, XYXY.
        gt (Tensor): (G, 4) GT boxes, XYXY.

    Returns:
        Tensor: (G, C).
    """
    g = gt[:, None, :]
    area_a = (cand[..., 2] - cand[..., 0]) * (cand[..., 3] - cand[..., 1])
    area_g = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    w = (torch.minimum(cand[..., 2], g[..., 2]) - torch.maximum(cand[..., 0], g[..., 0])).clamp(
        min=0
    )
    h = (torch.minimum(cand[..., 3], g[..., 3]) - torch.maximum(cand[..., 1], g[..., 1])).clamp(
        min=0
    )
    overlap = w * h
    union = (area_a + area_g - overlap).clamp(min=1e-6)
    return overlap / union
