"""
Adaptive Training Sample Selection (ATSS): Zhang, Chi, Yao, Lei, Li, "Bridging the Gap Between
Anchor-based and Anchor-free Detection via Adaptive Training Sample Selection", CVPR 2020,
arXiv 1912.02424 (Algorithm 1).

For every ground-truth box ``g``:

1. on each pyramid level, take the ``k`` anchors whose centers are nearest (L2) to the center of
   ``g`` (``k * A`` with ``A`` anchors per location, as the authors' code does), clamped to the
   level's size: the candidates ``C_g``;
2. ``t_g = mean + std`` (unbiased) of the IoUs between ``C_g`` and ``g``;
3. a candidate is positive iff its IoU ``>= t_g`` and its center lies inside ``g`` by more than
   ``center_margin`` on all four sides;
4. an anchor positive for several GTs goes to the one it overlaps most.

Everything else is background; ATSS ignores nothing.

Where this implementation departs from the authors' code and MMDetection's ``ATSSAssigner``
(same results otherwise; see docs/atss.md and benchmarks/bench_atss.py):

- Memory and speed: no anchors x GT IoU matrix (IoU is computed for the candidates only), and
  the distance matrix is built one level and one chunk of GTs at a time (``max_chunk_elements``),
  so peak extra memory is bounded by the chunk instead of growing as anchors x GT; no Python
  loop over GTs.
- Ties are broken deterministically and documented: among equal distances the anchor with the
  lower index wins (torch.topk's order on ties is unspecified); among GTs claiming one anchor
  with equal IoU, the lower GT index wins (as ``max`` does in the references). Candidates are
  ranked by squared distance (the references take a ``sqrt`` first, which can merge two
  different distances into a tie).
- The IoU statistics are accumulated in float64 (IoUs themselves stay in the boxes' dtype), so
  a GT whose candidates all have the same IoU gets exactly that IoU as threshold; in float32
  ``mean`` can round above the common value and drop every positive.
- A GT with a single candidate in total (one anchor in the whole image) gets ``std = 0``
  instead of NaN (which turns every comparison false in the references).
- Zero-area ground truth can never be positive for any anchor (no center lies strictly inside
  it), as in the references, but without NaNs anywhere.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import torch

from detectron2.structures import Boxes

__all__ = ["ATSSMatcher", "ATSSCandidates"]


@dataclass
class ATSSCandidates:
    """
    What ATSS saw for each ground-truth box of one image (for assignment, logging, plotting).

    Attributes:
        indices (Tensor): (G, C) int64, the candidate anchors of each GT as indices into the
            concatenated anchors, level by level, nearest first within a level. ``C`` is the
            same for every GT: ``sum_l min(topk * anchors_per_location, R_l)``.
        ious (Tensor): (G, C) IoU of each candidate with its GT, dtype of the boxes.
        thresholds (Tensor): (G,) float64 (float32 on MPS), ``mean + std`` of each GT's
            candidate IoUs.
        is_positive (Tensor): (G, C) bool, IoU ``>=`` threshold and center inside the GT.
        level_sizes (list[int]): number of anchors on each level.
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
    Label anchors foreground/background with ATSS. A pure, device-agnostic function object
    (no ``nn.Module``, no config): use it wherever Detectron2 uses a :class:`Matcher`.

    Example::

        matcher = ATSSMatcher(topk=9)
        matches, match_labels = matcher(gt_boxes, anchors)  # anchors: list of Boxes per level

    The output follows :class:`detectron2.modeling.matcher.Matcher`: ``match_labels`` 1 marks
    foreground (its GT is ``matches``), 0 background (``matches`` is 0 there, which keeps
    ``gt_boxes[matches]`` valid; it means nothing). There is no ignore label.
    """

    def __init__(
        self,
        topk: int = 9,
        *,
        anchors_per_location: int = 1,
        center_margin: float = 0.01,
        max_chunk_elements: int = 1 << 20,
    ):
        """
        Args:
            topk (int): ``k``, candidates per GT and per level, nearest centers first
                (``MODEL.ATSS.TOPK``; paper: 9).
            anchors_per_location (int): ``A``, anchors the generator puts at each location;
                ``topk * A`` candidates are taken per level, as in the authors' code. 1 for the
                ATSS detector, 9 for RetinaNet's anchors.
            center_margin (float): a positive's center must be inside its GT by more than this
                many pixels on every side (``MODEL.ATSS.CENTER_MARGIN``; authors: 0.01).
            max_chunk_elements (int): largest distance matrix (GTs x anchors of one level)
                built at once; bounds the extra memory, does not change results.

        Raises:
            ValueError: a value out of range; the message names the config key.
        """
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"MODEL.ATSS.TOPK (topk) must be an int >= 1, got {topk!r}")
        if (
            isinstance(anchors_per_location, bool)
            or not isinstance(anchors_per_location, int)
            or anchors_per_location < 1
        ):
            raise ValueError(
                "anchors_per_location (the anchor generator's anchors per location) must be an "
                f"int >= 1, got {anchors_per_location!r}"
            )
        try:
            center_margin = float(center_margin)
        except (TypeError, ValueError):
            raise ValueError(
                f"MODEL.ATSS.CENTER_MARGIN (center_margin) must be a number, got {center_margin!r}"
            ) from None
        if not center_margin >= 0.0:  # also rejects NaN
            raise ValueError(
                f"MODEL.ATSS.CENTER_MARGIN (center_margin) must be >= 0, got {center_margin!r}"
            )
        if not isinstance(max_chunk_elements, int) or max_chunk_elements < 1:
            raise ValueError(f"max_chunk_elements must be an int >= 1, got {max_chunk_elements!r}")
        self.topk = topk
        self.anchors_per_location = anchors_per_location
        self.center_margin = center_margin
        self.max_chunk_elements = max_chunk_elements

    def __repr__(self):
        return (
            f"ATSSMatcher(topk={self.topk}, anchors_per_location={self.anchors_per_location}, "
            f"center_margin={self.center_margin})"
        )

    def __call__(
        self, gt_boxes: Boxes, anchors: Union[Sequence[Boxes], Boxes]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            gt_boxes (Boxes): (G, 4) ground-truth boxes of one image, XYXY absolute.
            anchors (list[Boxes]): one ``Boxes`` (R_l, 4) per pyramid level, in the order the
                anchor generator returns them (a single ``Boxes`` is one level).

        Returns:
            matches (Tensor): (R,) int64, R = sum_l R_l; for a foreground anchor the index of
                its GT in ``gt_boxes``, 0 for background.
            match_labels (Tensor): (R,) int8, 1 foreground, 0 background.
        """
        return self.assign(self.select_candidates(gt_boxes, anchors))

    @torch.no_grad()
    def select_candidates(
        self, gt_boxes: Boxes, anchors: Union[Sequence[Boxes], Boxes]
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

        k = self.topk * self.anchors_per_location
        candidates = []
        start = 0
        for size in level_sizes:
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
            num_cand = sum(min(k, size) for size in level_sizes)
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
        ious64 = ious.to(_stat_dtype(device))
        mean = ious64.mean(dim=1)
        if num_cand > 1:
            std = ious64.std(dim=1)  # unbiased, as torch.Tensor.std in both references
        else:
            std = torch.zeros_like(mean)
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
        device = candidates.indices.device
        matches = torch.zeros((num_anchors,), dtype=torch.int64, device=device)
        match_labels = torch.zeros((num_anchors,), dtype=torch.int8, device=device)
        gt_idx, cand_idx = candidates.is_positive.nonzero(as_tuple=True)
        if gt_idx.numel() == 0:
            return matches, match_labels
        anchor_idx = candidates.indices[gt_idx, cand_idx]
        iou = candidates.ious[gt_idx, cand_idx]
        best = iou.new_full((num_anchors,), float("-inf")).scatter_reduce(
            0, anchor_idx, iou, reduce="amax"
        )
        wins = iou == best[anchor_idx]
        num_gt = candidates.indices.shape[0]
        winner = torch.full((num_anchors,), num_gt, dtype=torch.int64, device=device)
        winner = winner.scatter_reduce(0, anchor_idx[wins], gt_idx[wins], reduce="amin")
        fg = winner < num_gt
        matches[fg] = winner[fg]
        match_labels[fg] = 1
        return matches, match_labels


def _stat_dtype(device: torch.device) -> torch.dtype:
    """float64 for the IoU statistics (see the module docstring); MPS has no float64."""
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
    Indices of the ``k`` anchors nearest to each GT center, nearest first; equal distances go
    to the lower anchor index.

    Args:
        anchor_cx, anchor_cy (Tensor): (R,) anchor centers of one level.
        gt_cx, gt_cy (Tensor): (G,) GT centers.
        k (int): 1 <= k <= R.
        max_chunk_elements (int): at most this many distances are held at once (>= R).

    Returns:
        Tensor: (G, k) int64 indices into the level.
    """
    num_anchors, num_gt = anchor_cx.shape[0], gt_cx.shape[0]
    if k == num_anchors:
        # The whole level is the candidate set; order it by distance like the general case.
        return _sort_by_distance(
            torch.arange(num_anchors, device=anchor_cx.device).expand(num_gt, num_anchors),
            anchor_cx,
            anchor_cy,
            gt_cx,
            gt_cy,
        )
    out = torch.empty((num_gt, k), dtype=torch.int64, device=anchor_cx.device)
    step = max(1, max_chunk_elements // num_anchors)
    for s in range(0, num_gt, step):
        e = min(s + step, num_gt)
        # Squared distances (G_chunk, R), built in place: two buffers of the chunk's size.
        dist = anchor_cx[None, :] - gt_cx[s:e, None]
        dist.square_()
        dy = anchor_cy[None, :] - gt_cy[s:e, None]
        dist.add_(dy.square_())
        del dy
        # One extra element tells whether the k-th distance is tied with the (k+1)-th; only
        # then is the candidate *set* ambiguous and torch.topk's tie order would matter.
        vals, idx = dist.topk(k + 1, dim=1, largest=False, sorted=True)
        tied = vals[:, k - 1] == vals[:, k]
        idx, vals = idx[:, :k], vals[:, :k]
        # Canonical order inside the set too: by distance, equal distances by index.
        idx, perm = idx.sort(dim=1)
        idx = idx.gather(1, vals.gather(1, perm).argsort(dim=1, stable=True))
        if bool(tied.any()):
            rows = tied.nonzero()[:, 0]
            idx[rows] = _resolve_boundary_ties(dist[rows], vals[rows, k - 1], k)
        out[s:e] = idx
    return out


def _resolve_boundary_ties(dist: torch.Tensor, kth: torch.Tensor, k: int) -> torch.Tensor:
    """
    For rows whose k-th and (k+1)-th smallest distances are equal: every anchor strictly
    nearer than the k-th distance, then the lowest-index anchors at exactly that distance.

    Args:
        dist (Tensor): (T, R) distances.
        kth (Tensor): (T,) the k-th smallest distance of each row.
        k (int): candidates per row.

    Returns:
        Tensor: (T, k) int64, nearest first, equal distances by increasing index.
    """
    closer = dist < kth[:, None]
    at_kth = dist == kth[:, None]
    need = k - closer.sum(dim=1, keepdim=True)
    take = closer | (at_kth & (at_kth.cumsum(dim=1) <= need))
    idx = take.nonzero()[:, 1].view(-1, k)  # increasing index within each row
    order = dist.gather(1, idx).argsort(dim=1, stable=True)
    return idx.gather(1, order)


def _sort_by_distance(idx, anchor_cx, anchor_cy, gt_cx, gt_cy):
    """Order (G, n) anchor indices by distance to each GT center, equal distances by index."""
    dx = anchor_cx[idx] - gt_cx[:, None]
    dy = anchor_cy[idx] - gt_cy[:, None]
    dist = dx * dx + dy * dy
    return idx.gather(1, dist.argsort(dim=1, stable=True))


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
