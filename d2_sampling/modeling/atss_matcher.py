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

import functools
import math
import numbers
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from detectron2.structures import Boxes

from .atss_grid import AnchorGridLevel, GridPlan

__all__ = ["ATSSMatcher", "ATSSCandidates", "ATSSAnchors"]

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
        fallback (Tensor or None): (G, L) bool on the grid path: the (GT, level) pairs whose
            windows the guard could not prove, whose candidates came from the general path.
            None on the general path.
    """

    indices: torch.Tensor
    ious: torch.Tensor
    thresholds: torch.Tensor
    is_positive: torch.Tensor
    level_sizes: List[int]
    fallback: Optional[torch.Tensor] = None

    @property
    def num_anchors(self) -> int:
        return int(sum(self.level_sizes))


@dataclass
class ATSSAnchors:
    """
    The anchors of one batch as the matcher uses them, made once by
    :meth:`ATSSMatcher.prepare_anchors` and passed for every image in place of the list.

    Attributes:
        tensor (Tensor): (R, 4) every level's anchors, concatenated.
        level_sizes (list[int]): ``R_l`` per level.
        level_k (list[int]): ``topk * A_l`` per level.
        centers (Tensor): (R, 2) their centers, ``(x0 + x1) / 2`` and ``(y0 + y1) / 2``.
        plans (tuple[GridPlan, GridPlan] or None): the grid path's two passes (windows of
            ``ceil(sqrt(k)) + 1`` and 2 more cells); None: the general path.
        planes (Tensor): (6, R) ``tensor`` and ``centers`` transposed: x0, y0, x1, y1, cx,
            cy rows, so that the candidates' coordinates are gathered, in one operation, as
            planes the IoU arithmetic and the center test run on at full speed (an (R, 4)
            layout makes every operation with a GT broadcast over 4 values).
        points (Tensor or None): (R,) complex view of ``centers`` (``x + iy``), gathered and
            subtracted as one number per anchor by the grid path; None when it does not apply.
    """

    tensor: torch.Tensor
    level_sizes: List[int]
    level_k: List[int]
    centers: torch.Tensor
    plans: Optional[Tuple[GridPlan, GridPlan]]

    def __post_init__(self):
        self.num_candidates = sum(min(k, r) for r, k in zip(self.level_sizes, self.level_k))
        self.planes = torch.cat([self.tensor, self.centers], dim=1).t().contiguous()
        self.points = None
        if self.plans is not None:  # float32 (prepare_anchors): one complex64 per center
            self.points = self.centers.contiguous().view(torch.complex64).view(-1)


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

    Given the anchors' grid (:func:`~d2_sampling.modeling.atss_grid.anchor_grid`), the
    candidates come from a window of cells around each GT center (the grid path), with the
    same results bit for bit; for many images, prepare the anchors once
    (:meth:`prepare_anchors`) and pass the result instead of the list.
    """

    _MAX_PLANS = 64  # grid plans kept (one per distinct grid: input sizes vary per batch)

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
        self._plans = OrderedDict()

    def __repr__(self):
        return f"ATSSMatcher(topk={self.topk}, center_margin={self.center_margin})"

    def __call__(
        self,
        gt_boxes: Boxes,
        anchors: Union[Sequence[Boxes], Boxes, ATSSAnchors],
        anchors_per_location: Union[int, Sequence[int]] = 1,
        grid: Optional[Sequence[AnchorGridLevel]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            gt_boxes (Boxes): (G, 4) ground-truth boxes of one image, XYXY absolute.
            anchors (list[Boxes]): one ``Boxes`` (R_l, 4) per pyramid level, in the order the
                anchor generator returns them (a single ``Boxes`` is one level); or what
                :meth:`prepare_anchors` made of them (then leave the next two arguments out).
            anchors_per_location (int or list[int]): ``A``, the anchors the generator puts at
                each location (``anchor_generator.num_cell_anchors``: one per level, or one int
                for all levels); ``topk * A_l`` candidates are taken on level ``l``, as in the
                authors' code. 1 for the ATSS detector, 9 for RetinaNet's anchors.
            grid (list[AnchorGridLevel] or None): the levels' grids, when the anchors are
                Detectron2's grid anchors; None: the general path, for any anchors.

        Returns:
            matches (Tensor): (R,) int64, R = sum_l R_l; for a foreground anchor the index of
                its GT in ``gt_boxes``; 0 for background (keeps ``gt_boxes[matches]`` valid,
                means nothing).
            match_labels (Tensor): (R,) int8, 1 foreground, 0 background; never -1 (ATSS
                ignores nothing).

        Raises:
            ValueError: ``anchors_per_location`` not positive, or not one per level; ``grid``
                not one level per anchor level, or not the size of its level's anchors.
        """
        with torch.no_grad():  # (once: the two steps' own no_grad costs as much as an op)
            return _assign(self._select_candidates(gt_boxes, anchors, anchors_per_location, grid))

    def prepare_anchors(
        self,
        anchors: Union[Sequence[Boxes], Boxes],
        anchors_per_location: Union[int, Sequence[int]] = 1,
        grid: Optional[Sequence[AnchorGridLevel]] = None,
    ) -> ATSSAnchors:
        """
        The anchors concatenated once, their arguments checked and the grid path's plan made
        (or taken from the cache): pass the result for each image of a batch.

        The grid path is taken when ``grid`` is given, the anchors are float32, every level has
        anchors and all levels have the same ``A``; otherwise the general path.
        Same arguments and errors as ``__call__``.
        """
        if isinstance(anchors, Boxes):
            anchors = [anchors]
        level_sizes = [len(a) for a in anchors]
        level_k = self._candidates_per_level(anchors_per_location, len(level_sizes))
        if anchors:
            tensor = torch.cat([a.tensor for a in anchors])
        else:
            tensor = torch.zeros((0, 4))
        plans = None
        if grid is not None:
            grid = list(grid)
            per_level_a = [k // self.topk for k in level_k]
            if len(grid) != len(level_sizes):
                raise ValueError(
                    f"ATSSMatcher: grid has {len(grid)} levels, the anchors {len(level_sizes)}"
                )
            for lvl, (g, size, a) in enumerate(zip(grid, level_sizes, per_level_a)):
                if not isinstance(g, AnchorGridLevel) or g.height * g.width * a != size:
                    raise ValueError(
                        f"ATSSMatcher: grid level {lvl} ({g!r}) does not hold that level's "
                        f"{size} anchors ({a} per location)"
                    )
            if (
                tensor.dtype == torch.float32
                and tensor.device.type != "mps"  # the plan's bounds are float64
                and len(set(per_level_a)) == 1
                and all(size > 0 for size in level_sizes)
            ):
                window = math.isqrt(self.topk - 1) + 2  # ceil(sqrt(k)) + 1
                plans = tuple(
                    self._plan(tuple(grid), per_level_a[0], tensor.device, w)
                    for w in (window, window + 2)
                )
        # Centers as (x0 + x1) / 2, exactly as the references compute them, so that rankings
        # agree bit for bit.
        centers = torch.stack(
            [(tensor[:, 0] + tensor[:, 2]) / 2.0, (tensor[:, 1] + tensor[:, 3]) / 2.0], dim=1
        )
        return ATSSAnchors(
            tensor=tensor, level_sizes=level_sizes, level_k=level_k, centers=centers, plans=plans
        )

    def _plan(self, grid: tuple, anchors_per_location: int, device, window: int) -> GridPlan:
        key = (grid, anchors_per_location, str(device), window)
        plan = self._plans.get(key)
        if plan is None:
            plan = GridPlan(grid, anchors_per_location, self.topk, device, window)
            self._plans[key] = plan
            if len(self._plans) > self._MAX_PLANS:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    @torch.no_grad()
    def select_candidates(
        self,
        gt_boxes: Boxes,
        anchors: Union[Sequence[Boxes], Boxes, ATSSAnchors],
        anchors_per_location: Union[int, Sequence[int]] = 1,
        grid: Optional[Sequence[AnchorGridLevel]] = None,
    ) -> ATSSCandidates:
        """
        Steps 1-3: candidates, IoU thresholds and per-GT positives (before resolving anchors
        claimed by several GTs). Same arguments as ``__call__``.

        Returns:
            ATSSCandidates
        """
        return self._select_candidates(gt_boxes, anchors, anchors_per_location, grid)

    def _select_candidates(self, gt_boxes, anchors, anchors_per_location, grid) -> ATSSCandidates:
        if not isinstance(anchors, ATSSAnchors):
            anchors = self.prepare_anchors(anchors, anchors_per_location, grid)
        all_anchors, level_sizes = anchors.tensor, anchors.level_sizes
        gt = gt_boxes.tensor
        num_gt = gt.shape[0]
        device, dtype = all_anchors.device, all_anchors.dtype
        num_cand = anchors.num_candidates
        if all_anchors.shape[0] == 0 or num_gt == 0:
            return ATSSCandidates(
                indices=torch.zeros((num_gt, num_cand), dtype=torch.int64, device=device),
                ious=all_anchors.new_zeros((num_gt, num_cand)),
                thresholds=torch.zeros((num_gt,), dtype=_stat_dtype(device), device=device),
                is_positive=torch.zeros((num_gt, num_cand), dtype=torch.bool, device=device),
                level_sizes=level_sizes,
            )
        if gt.dtype != dtype:
            gt = gt.to(dtype)
        const = _select_operands(dtype, device, self.center_margin, num_cand)

        # (G, 1, 2) centers (the grid path's shape), (x0 + x1) / 2 as the references compute
        # them.
        gt_xy0, gt_xy1 = gt.view(-1, 1, 2, 2).unbind(2)
        gt_c = (gt_xy0 + gt_xy1).div_(const.two)
        fallback = None
        if anchors.plans is not None:
            indices, fallback = self._grid_nearest_k(anchors, gt_c)
        else:
            gt_c = gt_c.view(-1, 2)
            indices = self._general_nearest_k(anchors, gt_c[:, 0], gt_c[:, 1])

        # The candidates' corners and centers as (2, G, C) planes (x, y), the GTs' corners as
        # (2, G, 1).
        corners = anchors.planes.index_select(1, indices.reshape(-1))
        lo, hi, center = corners.view(3, 2, num_gt, -1).unbind(0)
        gt_lo, gt_hi = gt_xy0.permute(2, 0, 1), gt_xy1.permute(2, 0, 1)
        ious = _iou_planes(lo, hi, gt_lo, gt_hi)  # (G, C)

        # The statistics in float64: with float32, the mean of equal IoUs can round above
        # their common value and drop every positive of that GT.
        # The unbiased std (as torch.Tensor.std in both references) as |x - mean| / sqrt(n - 1):
        # within an ulp or two of torch.std's, in a tenth of its time on the CPU.
        ious64 = ious.to(_stat_dtype(device))
        thresholds = ious64.mean(dim=1, keepdim=True)  # (G, 1): mean, then mean + std
        if num_cand > 1:  # (a single candidate: std 0, not NaN)
            spread = torch.linalg.vector_norm(ious64 - thresholds, dim=1, keepdim=True)
            thresholds.addcdiv_(spread, const.sqrt_dof)  # + spread / sqrt(n - 1)
        is_positive = ious64 >= thresholds
        thresholds = thresholds.squeeze(1)

        # Center strictly inside the GT, by more than the margin on all four sides.
        inside = center - gt_lo
        torch.minimum(inside, torch.sub(gt_hi, center, out=center), out=inside)  # (2, G, C)
        is_positive &= inside.amin(dim=0) > const.margin
        return ATSSCandidates(
            indices=indices,
            ious=ious,
            thresholds=thresholds,
            is_positive=is_positive,
            level_sizes=level_sizes,
            fallback=fallback,
        )

    def _grid_nearest_k(self, anchors: ATSSAnchors, gt_c):
        """
        The grid path: windows of cells for every GT and level; the pairs the guard cannot
        prove get a wider window, then the general path. Waits for the device once (to learn
        whether a pair is unproven), more only when one is.

        Args:
            gt_c (Tensor): (G, 1, 2) GT centers, float32.

        Returns:
            indices (Tensor): (G, C) int64; fallback (Tensor): (G, L) bool.
        """
        narrow, wide = anchors.plans
        gt_points = gt_c.view(torch.complex64)  # (G, 1, 1) x + iy
        indices, unproven = narrow.nearest_k(anchors.points, gt_c, gt_points)
        if not bool(unproven.any()):
            return indices, unproven
        rows = unproven.any(dim=1).nonzero().squeeze(1)
        wide_indices, wide_unproven = wide.nearest_k(anchors.points, gt_c[rows], gt_points[rows])
        take = unproven[rows] & ~wide_unproven  # (G_r, L)
        indices[rows] = torch.where(take[:, narrow.column_level], wide_indices, indices[rows])
        fallback = torch.zeros_like(unproven)
        fallback[rows] = unproven[rows] & wide_unproven
        if bool(fallback.any()):
            gt_c = gt_c.view(-1, 2)
            self._general_nearest_k(anchors, gt_c[:, 0], gt_c[:, 1], indices, fallback)
        return indices, fallback

    def _general_nearest_k(self, anchors, gt_cx, gt_cy, out=None, rows=None):
        """
        The general path: every anchor's distance to every GT center, level by level.

        With ``out`` and ``rows`` ((G, L) bool), only the marked (GT, level) pairs are
        computed, written into ``out``'s columns of that level (the grid path's fallback).

        Returns:
            Tensor: (G, C) int64 candidate indices (``out`` when given).
        """
        level_sizes, level_k = anchors.level_sizes, anchors.level_k
        cols = []
        start = col = 0
        for lvl, (size, k) in enumerate(zip(level_sizes, level_k)):
            k = min(k, size)
            if size > 0:
                anchor_cx = anchors.centers[start : start + size, 0]
                anchor_cy = anchors.centers[start : start + size, 1]
                if out is None:
                    cols.append(
                        _nearest_k(anchor_cx, anchor_cy, gt_cx, gt_cy, k, self.max_chunk_elements)
                        + start
                    )
                else:
                    which = rows[:, lvl].nonzero().squeeze(1)
                    if which.numel():
                        out[which, col : col + k] = (
                            _nearest_k(
                                anchor_cx,
                                anchor_cy,
                                gt_cx[which],
                                gt_cy[which],
                                k,
                                self.max_chunk_elements,
                            )
                            + start
                        )
            start += size
            col += k
        return out if out is not None else torch.cat(cols, dim=1)

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
        return _assign(candidates)

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


def _assign(candidates: ATSSCandidates) -> Tuple[torch.Tensor, torch.Tensor]:
    """:meth:`ATSSMatcher.assign` without its ``no_grad``."""
    num_anchors = candidates.num_anchors
    indices, is_positive, ious = candidates.indices, candidates.is_positive, candidates.ious
    num_gt = indices.shape[0]
    device = indices.device
    flat = indices.reshape(-1)
    # Fixed shapes throughout (no nonzero, no boolean indexing): nothing waits for the device.
    bits_as_int = _BITS_AS_INT.get(ious.dtype)
    if bits_as_int is not None and num_gt <= _MAX_KEYED_GT:
        # One key per (GT, candidate), smaller for a better claim: (max bits - the IoU's bits)
        # << 31 | GT index (a non-negative float orders like its bit pattern; the sign bit is
        # cleared so that -0.0 counts as 0.0), _NOT_CLAIMED for a non-positive. An anchor's
        # smallest key is its highest IoU, ties to the lower GT index: one scatter, and the
        # buffer's low bits are the matches (0 where unclaimed).
        key_base, bits_mask, not_claimed = _claim_operands(num_gt, bits_as_int, device)
        bits = torch.bitwise_and(ious.view(bits_as_int), bits_mask)
        key = torch.sub(key_base, bits, alpha=1 << 31)
        key = torch.where(is_positive, key, not_claimed)
        best = torch.full((num_anchors,), _NOT_CLAIMED, dtype=torch.int64, device=device)
        best.scatter_reduce_(0, flat, key.view(-1), reduce="amin")
        matches = best.bitwise_and_((1 << 31) - 1)
        # Foreground: claimed by a positive, the same as best < _NOT_CLAIMED, in a scatter of
        # the (G, C) flags instead of a comparison over all anchors (several times slower at
        # 20k anchors on the CPU).
        labels = torch.zeros((num_anchors,), dtype=torch.int8, device=device)
        labels.scatter_reduce_(0, flat, is_positive.reshape(-1).view(torch.int8), reduce="amax")
        return matches, labels
    # float64 IoUs (no room for an index beside their bits): two scatters. Non-positive
    # entries take part as -inf IoU / GT index num_gt, which never win.
    not_positive = ~is_positive
    iou = ious.masked_fill(not_positive, float("-inf"))
    best = iou.new_full((num_anchors,), float("-inf"))
    best.scatter_reduce_(0, flat, iou.reshape(-1), reduce="amax")
    loses = (iou != best.index_select(0, flat).view_as(iou)).logical_or_(not_positive)
    claims = (
        torch.arange(num_gt, device=device)[:, None].expand_as(indices).masked_fill(loses, num_gt)
    )
    winner = torch.full((num_anchors,), num_gt, dtype=torch.int64, device=device)
    winner.scatter_reduce_(0, flat, claims.reshape(-1), reduce="amin")
    foreground = winner < num_gt
    matches = winner.masked_fill_(~foreground, 0)
    return matches, foreground.to(torch.int8)


# assign's keys: bits (< 2**31) << 31 | GT index (< 2**31), all below _NOT_CLAIMED = 2**62,
# whose low bits are 0 (the match of an unclaimed anchor).
_NOT_CLAIMED = 1 << 62
_MAX_KEYED_GT = 1 << 31


# Numbers an operation takes as tensors, made once (below). On the CPU, PyTorch turns a Python
# number into a tensor of the other operand's dtype with a copy at every call when the two
# dtypes differ (a Python float against float32, an int against int32): 2-3 us, as long as
# the operation itself takes at the sizes of a call.


@functools.lru_cache(maxsize=64)
def _claim_operands(
    num_gt: int, bits_as_int: torch.dtype, device
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    ``_assign``'s keys: (G, 1) int64, the largest bit pattern of ``bits_as_int``, << 31, plus
    the GT index; that largest pattern (the mask that clears the sign bit) as a 0-dim
    ``bits_as_int``; ``_NOT_CLAIMED`` as a 0-dim int64. Cached (read only): a few hundred bytes
    per GT count and device.
    """
    top = torch.iinfo(bits_as_int).max
    base = torch.arange(top << 31, (top << 31) + num_gt, dtype=torch.int64, device=device)
    return (
        base.unsqueeze(1),
        torch.tensor(top, dtype=bits_as_int, device=device),
        torch.tensor(_NOT_CLAIMED, dtype=torch.int64, device=device),
    )


class _SelectOperands(NamedTuple):
    two: torch.Tensor  # 0-dim, 2 in the anchors' dtype (exact in every float dtype)
    margin: Union[torch.Tensor, float]  # 0-dim, the center margin (or a float: see below)
    sqrt_dof: torch.Tensor  # 0-dim, sqrt(C - 1) in the statistics' dtype


@functools.lru_cache(maxsize=64)
def _select_operands(
    dtype: torch.dtype, device, center_margin: float, num_candidates: int
) -> _SelectOperands:
    """
    ``_select_candidates``'s numbers, for anchors of ``dtype``. The center margin stays a
    Python float for dtypes other than float32 and float64: CUDA compares a float16 tensor with
    a Python float in float32, with a float16 tensor in float16 (the margin rounded).
    """
    margin = center_margin
    if dtype in (torch.float32, torch.float64):
        margin = torch.tensor(center_margin, dtype=dtype, device=device)
    return _SelectOperands(
        two=torch.tensor(2.0, dtype=dtype, device=device),
        margin=margin,
        sqrt_dof=torch.tensor(
            math.sqrt(max(num_candidates - 1, 1)), dtype=_stat_dtype(device), device=device
        ),
    )


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


def _iou_planes(lo, hi, gt_lo, gt_hi) -> torch.Tensor:
    """
    IoU of each GT with each of its own candidates.

    Written with the same floating-point operations as MMDetection's ``bbox_overlaps``
    (candidate area + GT area - overlap, union clamped at 1e-6), so values agree bit for bit;
    x and y are computed together, which changes no value.

    Args:
        lo, hi (Tensor): (2, G, C) the candidates' corners: x0, y0 and x1, y1 planes.
        gt_lo, gt_hi (Tensor): (2, G, 1) the GTs' corners.

    Returns:
        Tensor: (G, C).
    """
    # (The GTs' areas in one operation: 1 * w * h, which is w * h exactly; the candidates' in
    # place, for which prod, with a fresh buffer, is slower at 200 GTs and 405 candidates.)
    w, h = (hi - lo).unbind(0)
    area = w.mul_(h)
    area_g = (gt_hi - gt_lo).prod(dim=0)
    wh = torch.minimum(hi, gt_hi).sub_(torch.maximum(lo, gt_lo)).clamp_(min=0)
    overlap_w, overlap_h = wh.unbind(0)
    overlap = overlap_w.mul_(overlap_h)
    union = area.add_(area_g).sub_(overlap).clamp_(min=1e-6)
    return overlap.div_(union)
