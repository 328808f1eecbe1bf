"""
ATSS candidates from the anchor grid: the ``k`` nearest anchors of a GT on a level of
Detectron2's grid anchors lie in a small window of cells around the GT's center, so ATSS's
candidate step needs a few hundred distances per GT and level, whatever the image size. The
window's result is checked by a guard that proves it holds the true nearest anchors; the pairs
it cannot prove take :class:`~d2_sampling.modeling.ATSSMatcher`'s general path. Results are
bit-identical to the general path's. How and why: docs/atss.md ("The grid path").
"""

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

__all__ = ["AnchorGridLevel", "anchor_grid", "GridPlan", "PackedRows"]

# The guard's safety factor: a window is trusted only when its k-th squared distance is below
# (1 - _GUARD_MARGIN) x the squared distance to the nearest cell outside it, which absorbs the
# float32 rounding of anchor centers (relative error ~1e-7 x coordinate / distance) for
# coordinates far beyond any image size.
_GUARD_MARGIN = 1e-3
_NO_KEY = torch.iinfo(torch.int64).max  # a window slot outside the level: never selected


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
        # (L, 2) as (x, y): stride, offset, window extent, last window start.
        self.stride = torch.tensor([[lv.stride, lv.stride] for lv in levels], **f64)
        self.stride_sq = self.stride.square()
        self.offset = torch.tensor([[lv.offset, lv.offset] for lv in levels], **f64)
        extent = [[min(w, lv.width), min(w, lv.height)] for lv in levels]
        self.extent = torch.tensor(extent, **f64)
        self.max_start = torch.tensor(
            [[lv.width - e[0], lv.height - e[1]] for lv, e in zip(levels, extent)], **f64
        )
        self.width = torch.tensor([lv.width for lv in levels], **i64)
        self.last = torch.tensor([[lv.width - 1, lv.height - 1] for lv in levels], **f64)
        starts = [0]
        for r in sizes[:-1]:
            starts.append(starts[-1] + r)
        self.level_start = torch.tensor(starts, **i64)
        # The window's anchors as offsets from its first location's first anchor, (L, M),
        # M = w * w * A, location-major like the anchors (so index order is kept); slots
        # beyond a small level's extent point at that first anchor and are never selected.
        offs = torch.arange(w, **i64)
        valid = (offs[None, :, None] < self.extent[:, 1, None, None]) & (
            offs[None, None, :] < self.extent[:, 0, None, None]
        )  # (L, w, w) as (row, column)
        loc = offs[None, :, None] * self.width[:, None, None] + offs[None, None, :]
        pattern = loc[..., None] * self.A + torch.arange(self.A, **i64)
        valid = valid[..., None].expand(-1, -1, -1, self.A).reshape(self.num_levels, -1)
        self.pattern = pattern.reshape(self.num_levels, -1).masked_fill(~valid, 0)
        # (decided on the host: no wait for the device)
        clipped = any(lv.width < w or lv.height < w for lv in levels)
        self.invalid = ~valid if clipped else None
        # Position of each level's last candidate among its sorted window, and the output
        # columns: level l's first level_k[l] of K sorted slots, levels concatenated.
        self.kth = torch.tensor([k - 1 for k in self.level_k], **i64)
        self.columns = torch.tensor(
            [lvl * self.K + j for lvl, k in enumerate(self.level_k) for j in range(k)], **i64
        )
        self.num_candidates = int(sum(self.level_k))
        self.column_level = torch.tensor(
            [lvl for lvl, k in enumerate(self.level_k) for _ in range(k)], **i64
        )

    def nearest_k(
        self, centers: "PackedRows", gt_cx: torch.Tensor, gt_cy: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Each GT's candidates from its windows, and which (GT, level) pairs the guard could not
        prove (their columns are then meaningless).

        Args:
            centers (PackedRows): of the (R, 2) centers ``((x0 + x1) / 2, (y0 + y1) / 2)`` of
                the levels' anchors, concatenated.
            gt_cx, gt_cy (Tensor): (G,) GT centers, ``(x0 + x1) / 2`` in the anchors' dtype.

        Returns:
            indices (Tensor): (G, C) int64 into ``all_anchors``, as the general path's.
            unproven (Tensor): (G, L) bool.
        """
        num_gt, L, w, A = gt_cx.shape[0], self.num_levels, self.window, self.A
        # Cell coordinates of the centers (location j is at j): (G, L, 2).
        gt_c = torch.stack([gt_cx, gt_cy], dim=1)
        t = (gt_c[:, None, :].to(torch.float64) / self.stride).sub_(self.offset)
        start = (t - (w / 2.0 - 1.0)).floor_().nan_to_num_(0.0)
        start = torch.minimum(start.clamp_(min=0.0), self.max_start)
        # A lower bound on the distance from the center to any location outside the window:
        # such a location is beyond the window's column (row) on one side, at least `gap`
        # cells away along that axis (inf where the window reaches the level's edge on that
        # side), and at least `off` cells away along the other axis, `off` being how far
        # the center lies outside the level's span of rows (columns). In cells, (G, L, 2).
        # (masked_fill, not torch.where with a scalar: no temporaries, no type promotion.)
        before = (t - start).add_(1.0).masked_fill_(start <= 0, math.inf)
        after = (start + self.extent).sub_(t).masked_fill_(start >= self.max_start, math.inf)
        gap = torch.minimum(before, after)
        off = (t - torch.minimum(t.clamp(min=0.0), self.last)).abs_()
        bound = gap.square_().add_(off.flip(2).square_()).mul_(self.stride_sq)
        bound = bound.amin(dim=2)  # (G, L), squared pixels

        # Index (into all levels) of each window's first anchor, then of all its anchors.
        s = start.to(torch.int64)
        first = (s[..., 1] * self.width + s[..., 0]).mul_(A).add_(self.level_start)  # (G, L)
        window = first[:, :, None] + self.pattern  # (G, L, M)
        c = centers[window.view(-1)].view(num_gt, L, -1, 2)

        # The general path's arithmetic: dx * dx + dy * dy in the anchors' dtype, bit for bit
        # (IEEE addition commutes). Keys (distance bits, index) rank as its keys do: the index
        # here is into all levels, which orders a level's anchors as its own index does.
        d = c - gt_c[:, None, None, :]
        d.square_()
        dist = d[..., 0] + d[..., 1]
        key = dist.view(torch.int32).to(torch.int64)
        key.mul_(1 << 32).bitwise_or_(window)  # (a shift, as a multiplication: faster)
        if self.invalid is not None:
            key.masked_fill_(self.invalid, _NO_KEY)
        top = key.topk(self.K, dim=2, largest=False, sorted=True).values  # (G, L, K)

        kth = top.gather(2, self.kth[None, :, None].expand(num_gt, L, 1)).squeeze(2)
        kth_dist = kth.bitwise_right_shift(32).to(torch.int32).view(torch.float32)
        proven = (kth != _NO_KEY) & (kth_dist.to(torch.float64) < bound.mul_(1.0 - _GUARD_MARGIN))
        indices = top.bitwise_and_(0xFFFFFFFF)
        indices = indices.reshape(num_gt, L * self.K).index_select(1, self.columns)
        return indices, ~proven


_ROW_AS = {8: torch.int64, 16: torch.complex128}


class PackedRows:
    """
    Row gathers ``x[index]`` of a 2-D tensor, fast on the CPU: rows of 8 or 16 bytes (two or
    four float32) are read as one int64 / complex128 each, several times faster than gathering
    their columns. The packed view is made once.

    Args:
        x (Tensor): (R, D).
    """

    def __init__(self, x: torch.Tensor):
        self.x = x
        row_as = _ROW_AS.get(x.shape[1] * x.element_size()) if x.dim() == 2 else None
        if x.device.type == "cpu" and row_as is not None and x.is_contiguous():
            self.packed = x.view(row_as).view(-1)
        else:
            self.packed = None

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        """(N,) int64 -> (N, D)."""
        if self.packed is None:
            return self.x.index_select(0, index)
        return self.packed.index_select(0, index).view(self.x.dtype).view(-1, self.x.shape[1])
