"""
ATSS candidates from the anchor grid: the ``k`` nearest anchors of a GT on a level of
Detectron2's grid anchors lie in a small window of cells around the GT's center, so ATSS's
candidate step needs a few hundred distances per GT and level, whatever the image size. The
window's result is checked by a guard that proves it holds the true nearest anchors; the pairs
it cannot prove take :class:`~d2_sampling.modeling.ATSSMatcher`'s general path. Results are
bit-identical to the general path's. How and why: docs/atss.md ("The grid path").
"""

import math
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

__all__ = ["AnchorGridLevel", "anchor_grid", "GridPlan"]

# The guard's safety factor: a window is trusted only when its k-th squared distance is below
# (1 - _GUARD_MARGIN) x the squared distance to the nearest cell outside it, which absorbs the
# float32 rounding of anchor centers (relative error ~1e-7 x coordinate / distance) for
# coordinates far beyond any image size.
_GUARD_MARGIN = 1e-3
_NO_KEY = torch.iinfo(torch.int64).max  # a window slot outside the level: never selected
# Which of the two 32-bit halves of an int64 key, viewed as a pair of float32 (Tensor.view),
# holds its high bits, where the distance bits go: the second in little-endian memory.
_HIGH = 1 if sys.byteorder == "little" else 0


@dataclass(frozen=True)
class AnchorGridLevel:
    """
    The anchors of one pyramid level as Detectron2's :class:`DefaultAnchorGenerator` lays
    them out: ``height x width`` locations in row-major order, location ``(i, j)`` centered at
    ``((j + offset) * stride, (i + offset) * stride)``, each with the same ``A`` cell anchors
    centered on it (anchor index ``(i * width + j) * A + a``).
    """

    stride: float
    height: int
    width: int
    offset: float

    def __post_init__(self):
        if not (isinstance(self.stride, (int, float)) and self.stride > 0):
            raise ValueError(f"AnchorGridLevel: stride must be > 0, got {self.stride!r}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"AnchorGridLevel: {name} must be an int >= 0, got {value!r}")
        if not (isinstance(self.offset, (int, float)) and 0.0 <= self.offset < 1.0):
            raise ValueError(f"AnchorGridLevel: offset must be in [0, 1), got {self.offset!r}")


def anchor_grid(
    anchor_generator, features: Sequence[torch.Tensor]
) -> Optional[List[AnchorGridLevel]]:
    """
    The grid of the anchors ``anchor_generator(features)`` returns, or None when the generator
    is not Detectron2's :class:`DefaultAnchorGenerator` (whose cell anchors are centered on
    their location, which the grid path relies on); the matcher then takes its general path.

    Args:
        anchor_generator: the meta-architecture's anchor generator.
        features (list[Tensor]): the (N, C, H_l, W_l) features it makes anchors for.
    """
    if type(anchor_generator) is not DefaultAnchorGenerator:
        return None
    return [
        AnchorGridLevel(
            float(stride), int(f.shape[-2]), int(f.shape[-1]), float(anchor_generator.offset)
        )
        for stride, f in zip(anchor_generator.strides, features)
    ]


class GridPlan:
    """
    Everything about the grid path that depends only on the levels, ``A`` and ``k``: built once
    per grid (the matcher caches it), so a call does only per-GT work.

    Window: ``w x w`` cells per level (fewer on a level smaller than that), the cells nearest
    the GT center, moved inside the level at its borders. The matcher's first pass uses
    ``w = ceil(sqrt(k)) + 1`` (4 for k = 9: enough anywhere inside a level); the pairs it cannot
    prove (centers near a level's edge, whose nearest cells run along the edge) get a second
    pass with ``w + 2``.
    """

    def __init__(
        self,
        levels: Sequence[AnchorGridLevel],
        anchors_per_location: int,
        topk: int,
        device: torch.device,
        window: int,
    ):
        self.levels = tuple(levels)
        self.num_levels = len(levels)
        self.A = anchors_per_location
        self.window = w = window
        sizes = [lv.height * lv.width * self.A for lv in levels]
        self.level_sizes = sizes
        self.level_k = [min(topk * self.A, r) for r in sizes]
        self.K = max(self.level_k) if self.level_k else 0
        f64 = dict(dtype=torch.float64, device=device)
        i64 = dict(dtype=torch.int64, device=device)
        # (L, 2) as (x, y): stride, -offset, last window start, last location.
        self.stride = torch.tensor([[lv.stride, lv.stride] for lv in levels], **f64)
        # The guard's squared strides, its safety factor folded in.
        self.stride_sq = self.stride.square().mul_(1.0 - _GUARD_MARGIN)
        self.neg_offset = torch.tensor([[-lv.offset, -lv.offset] for lv in levels], **f64)
        extent = [[min(w, lv.width), min(w, lv.height)] for lv in levels]
        self.max_start = torch.tensor(
            [[lv.width - e[0], lv.height - e[1]] for lv, e in zip(levels, extent)], **f64
        )
        self.last = torch.tensor([[lv.width - 1, lv.height - 1] for lv in levels], **f64)
        self.zero = torch.zeros_like(self.last)
        # The guard's two sides of the window, (2, 1, L, 2) as (side, -, level, axis): side 0
        # the columns (rows) before the window, side 1 those after it. A window starting at
        # `edge` leaves nothing on that side; with `rel` the center's offset from the window's
        # start, the next cell on that side is `side_sign x rel + side_base` cells away.
        # (The side dimension first: operations on (2, G, L, 2) then run over runs of L x 2
        # values, as those on (G, L, 2) do, not over pairs.)
        self.edge = torch.stack([self.zero, self.max_start]).unsqueeze(1)
        self.side_sign = torch.tensor([1.0, -1.0], **f64).view(2, 1, 1, 1)
        self.side_base = torch.stack(
            [torch.ones_like(self.last), torch.tensor(extent, **f64)]
        ).unsqueeze(1)
        # A window start (column, row) -> the index of its first anchor: a dot product.
        self.cell_step = torch.tensor([[self.A, lv.width * self.A] for lv in levels], **i64)
        starts = [0]
        for r in sizes[:-1]:
            starts.append(starts[-1] + r)
        self.level_start = torch.tensor(starts, **i64)
        # The window's anchors as offsets from its first location's first anchor, plus the
        # level's first anchor, (L, M), M = w * w * A, location-major like the anchors (so
        # index order is kept); slots beyond a small level's extent point at that first
        # anchor and are never selected.
        offs = torch.arange(w, **i64)
        extent_t = torch.tensor(extent, **i64)
        width = torch.tensor([lv.width for lv in levels], **i64)
        valid = (offs[None, :, None] < extent_t[:, 1, None, None]) & (
            offs[None, None, :] < extent_t[:, 0, None, None]
        )  # (L, w, w) as (row, column)
        loc = offs[None, :, None] * width[:, None, None] + offs[None, None, :]
        pattern = loc[..., None] * self.A + torch.arange(self.A, **i64)
        valid = valid[..., None].expand(-1, -1, -1, self.A).reshape(self.num_levels, -1)
        pattern = pattern.reshape(self.num_levels, -1).masked_fill(~valid, 0)
        self.pattern = pattern + self.level_start[:, None]
        # (decided on the host: no wait for the device)
        clipped = any(lv.width < w or lv.height < w for lv in levels)
        self.invalid = ~valid if clipped else None
        # Position of each level's last candidate among the (L x K) sorted window slots (of
        # its distance, among the keys' 2 x L x K halves), and the output columns: level l's
        # first level_k[l] of its K slots, levels concatenated (all of them, left as they are,
        # when every level has K).
        kth = [lvl * self.K + k - 1 for lvl, k in enumerate(self.level_k)]
        self.kth_dist = torch.tensor([2 * i + _HIGH for i in kth], **i64)
        columns = [lvl * self.K + j for lvl, k in enumerate(self.level_k) for j in range(k)]
        same_k = all(k == self.K for k in self.level_k)
        self.columns = None if same_k else torch.tensor(columns, **i64)
        self.num_candidates = int(sum(self.level_k))
        self.column_level = torch.tensor(
            [lvl for lvl, k in enumerate(self.level_k) for _ in range(k)], **i64
        )

    def nearest_k(
        self, points: torch.Tensor, gt_c: torch.Tensor, gt_points: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Each GT's candidates from its windows, and which (GT, level) pairs the guard could not
        prove (their columns are then meaningless).

        Args:
            points (Tensor): (R,) complex64, the centers ``(x0 + x1) / 2 + i (y0 + y1) / 2`` of
                the levels' anchors, concatenated (``ATSSAnchors.points``).
            gt_c (Tensor): (G, 1, 2) float32 GT centers, ``(x0 + x1) / 2``; ``gt_points`` the
                same as (G, 1, 1) complex64.

        Returns:
            indices (Tensor): (G, C) int64 into ``all_anchors``, as the general path's.
            unproven (Tensor): (G, L) bool.
        """
        num_gt, L, w = gt_c.shape[0], self.num_levels, self.window
        # Cell coordinates of the centers (location j is at j): (G, L, 2).
        t = torch.addcdiv(self.neg_offset, gt_c.to(torch.float64), self.stride)
        # (fmax / fmin: a NaN center starts at 0, infinite ones clamp as numbers do)
        start = (t - (w / 2.0 - 1.0)).floor_()
        torch.fmin(torch.fmax(start, self.zero, out=start), self.max_start, out=start)
        # A lower bound on the distance from the center to any location outside the window:
        # such a location is beyond the window's column (row) on one side, at least `gap`
        # cells away along that axis (inf where the window reaches the level's edge on that
        # side), and at least `off` cells away along the other axis, `off` being how far
        # the center lies outside the level's span of rows (columns). In cells.
        # Both sides at once, (2, G, L, 2): rel + 1 before the window, extent - rel after it
        # (the same values as (start + extent) - t: rel = t - start is exact wherever the
        # window does not reach the far edge, and there that side is inf anyway).
        rel = t - start
        gap = torch.addcmul(self.side_base, self.side_sign, rel)
        gap.masked_fill_(torch.eq(start, self.edge), math.inf)
        # (off's sign is left as it is: only its square counts)
        off = t.sub_(torch.clamp(t, self.zero, self.last)).flip(2)
        # (gap^2 + off^2) x stride^2 for both sides, then the least over sides and axes: the
        # same value as with the nearer side's gap alone (both sides' gaps are positive, and
        # squaring, adding and multiplying by a positive number round monotonically).
        bound = gap.mul_(gap).addcmul_(off, off).mul_(self.stride_sq)
        bound = bound.amin(dim=(0, 3))  # (G, L), squared pixels, times 1 - _GUARD_MARGIN

        # Index of each window's first anchor within its level, (G, L, 1), then of all its
        # anchors (into all levels).
        first = start.to(torch.int64).mul_(self.cell_step).sum(dim=2, keepdim=True)
        window = first + self.pattern  # (G, L, M)

        # The general path's arithmetic: dx * dx + dy * dy in float32, bit for bit (IEEE
        # addition commutes; a complex subtraction is the two real ones). Keys (distance
        # bits, index) rank as its keys do: the index here is into all levels, which orders
        # a level's anchors as its own index does.
        # (In place where it can: fresh buffers of this size cost page faults on the CPU.)
        # (index_select, not take: take is several times slower at 200 GTs)
        d = points.index_select(0, window.view(-1)).view(num_gt, L, -1).sub_(gt_points)
        d = torch.view_as_real(d)
        dx2, dy2 = d.mul_(d).unbind(3)
        # The keys: the distances' bits written into the high halves of the indices (< 2^31),
        # which is index + (bits << 32) without a conversion to int64.
        key = window
        torch.add(dx2, dy2, out=key.view(torch.float32)[..., _HIGH::2])
        if self.invalid is not None:
            key.masked_fill_(self.invalid, _NO_KEY)
        top = key.topk(self.K, dim=2, largest=False, sorted=True).values  # (G, L, K)
        top = top.view(num_gt, L * self.K)

        # The guard: the k-th squared distance below the bound. A window slot outside a small
        # level (_NO_KEY) reads as NaN, which is below nothing: never proven.
        kth_dist = top.view(torch.float32).index_select(1, self.kth_dist)  # (G, L)
        unproven = torch.lt(kth_dist, bound).logical_not_()  # (compared in float64)
        indices = top.bitwise_and_(0xFFFFFFFF)
        if self.columns is not None:
            indices = indices.index_select(1, self.columns)
        return indices, unproven
