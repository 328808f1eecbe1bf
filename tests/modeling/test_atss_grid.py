"""
The ATSS matcher's grid path (d2_sampling/modeling/atss_grid.py) against its general path: the
same candidates, IoUs, thresholds, positives and assignment, bit for bit, on random scenes made
to be hard (odd image sizes, GTs at borders and corners and beyond them, tiny and huge GTs,
centers exactly on cell centers and cell boundaries, quantized coordinates that tie distances,
1 or 9 anchors per location, offsets 0 and 0.5, levels with fewer than k locations), and hand
cases for the guard and its fallback.
"""

import math
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from d2_sampling.engine.setup import load_yacs_config
from d2_sampling.modeling import AnchorGridLevel, ATSSMatcher, RetinaNetATSS, anchor_grid
from d2_sampling.modeling.atss_grid import GridPlan

REPO = Path(__file__).resolve().parents[2]

STRIDE_SETS = [(8, 16, 32, 64, 128), (4, 8, 16, 32, 64), (8, 16, 32), (16,), (32, 64)]


def make_generator(strides, per_location, offset):
    if per_location == 1:
        sizes, ratios = [[8 * s] for s in strides], [1.0]
    else:
        sizes = [[4 * s, 4 * s * 2 ** (1 / 3), 4 * s * 2 ** (2 / 3)] for s in strides]
        ratios = [0.5, 1.0, 2.0]
    return DefaultAnchorGenerator(
        sizes=sizes, aspect_ratios=ratios, strides=list(strides), offset=offset
    )


def features_for(strides, h, w):
    return [torch.zeros(1, 1, math.ceil(h / s), math.ceil(w / s)) for s in strides]


def random_gt(gen, h, w, strides, offset):
    """1-200 GT boxes of every hard kind, in an h x w image (some beyond it)."""

    def rnd(*shape):
        return torch.rand(*shape, generator=gen)

    num = (
        int(torch.randint(1, 201, (1,), generator=gen))
        if rnd(1) < 0.3
        else int(torch.randint(1, 13, (1,), generator=gen))
    )
    kind = torch.randint(0, 6, (num,), generator=gen)
    center = rnd(num, 2) * torch.tensor([w, h])
    size = torch.exp(rnd(num, 2) * math.log(max(h, w))) + 0.5
    s = torch.tensor(strides, dtype=torch.float32)[
        torch.randint(0, len(strides), (num,), generator=gen)
    ]
    # 1: center exactly on a cell center of some level; 2: on a cell boundary (midpoint
    # between centers); 3: at a border or corner of the image; 4: tiny; 5: huge.
    on_center = (torch.floor(center / s[:, None]) + offset) * s[:, None]
    on_boundary = (torch.floor(center / s[:, None]) + offset + 0.5) * s[:, None]
    center = torch.where((kind == 1)[:, None], on_center, center)
    center = torch.where((kind == 2)[:, None], on_boundary, center)
    corner = torch.stack(
        [
            torch.randint(0, 2, (num,), generator=gen) * w,
            torch.randint(0, 2, (num,), generator=gen) * h,
        ],
        1,
    ).float()
    edge = torch.where(rnd(num, 1) < 0.5, corner, torch.stack([corner[:, 0], center[:, 1]], 1))
    center = torch.where((kind == 3)[:, None], edge + (rnd(num, 2) - 0.5) * 4, center)
    size = torch.where((kind == 4)[:, None], rnd(num, 2) * 2 + 0.01, size)
    size = torch.where((kind == 5)[:, None], torch.tensor([w, h]) * (0.5 + rnd(num, 2)), size)
    boxes = torch.cat([center - size / 2, center + size / 2], dim=1)
    if rnd(1) < 0.5:  # clipped to the image, as Detectron2's data
        boxes = torch.stack(
            [
                boxes[:, 0].clamp(0, w),
                boxes[:, 1].clamp(0, h),
                boxes[:, 2].clamp(0, w),
                boxes[:, 3].clamp(0, h),
            ],
            1,
        )
    if rnd(1) < 0.5:  # quantized: exact distances, many ties
        boxes = torch.round(boxes * 2) / 2
    return Boxes(boxes)


def random_case(gen):
    strides = STRIDE_SETS[int(torch.randint(0, len(STRIDE_SETS), (1,), generator=gen))]
    per_location = 1 if torch.rand(1, generator=gen) < 0.5 else 9
    offset = 0.0 if torch.rand(1, generator=gen) < 0.5 else 0.5
    topk = [1, 4, 9, 9, 9, 16][int(torch.randint(0, 6, (1,), generator=gen))]
    if torch.rand(1, generator=gen) < 0.2:  # tiny: levels with fewer than k locations
        h, w = (int(x) for x in torch.randint(8, 100, (2,), generator=gen))
    else:
        h, w = (int(x) for x in torch.randint(100, 700, (2,), generator=gen))
    gen_anchors = make_generator(strides, per_location, offset)
    feats = features_for(strides, h, w)
    anchors = gen_anchors(feats)
    grid = anchor_grid(gen_anchors, feats)
    gt = random_gt(gen, h, w, strides, offset)
    return gt, anchors, per_location, grid, topk


def assert_same(general, grid_c, general_out, grid_out, context):
    for name in ("indices", "ious", "thresholds", "is_positive"):
        a, b = getattr(general, name), getattr(grid_c, name)
        assert a.dtype == b.dtype and torch.equal(a, b), f"{name} differ: {context}"
    for a, b in zip(general_out, grid_out):
        assert torch.equal(a, b), f"assignment differs: {context}"


def check_scenes(seed, count):
    gen = torch.Generator().manual_seed(seed)
    stats = dict(pairs=0, fallback=0)
    for i in range(count):
        gt, anchors, per_location, grid, topk = random_case(gen)
        matcher = ATSSMatcher(topk)
        general = matcher.select_candidates(gt, anchors, per_location)
        prepared = matcher.prepare_anchors(anchors, per_location, grid)
        assert prepared.plans is not None
        grid_c = matcher.select_candidates(gt, prepared)
        context = f"seed {seed} scene {i}: {len(gt)} GT, A={per_location}, k={topk}, {grid}"
        assert_same(general, grid_c, matcher.assign(general), matcher.assign(grid_c), context)
        assert general.fallback is None and grid_c.fallback.shape == (len(gt), len(anchors))
        stats["pairs"] += grid_c.fallback.numel()
        stats["fallback"] += int(grid_c.fallback.sum())
    return stats


def test_grid_equals_general_on_random_scenes():
    stats = check_scenes(seed=0, count=2000)
    # The guard is not vacuous (some pairs needed the general path) and the grid path is the
    # grid path (nearly all did not).
    assert 0 < stats["fallback"] < 0.05 * stats["pairs"], stats


@pytest.mark.slow
def test_grid_equals_general_on_more_random_scenes():
    check_scenes(seed=1, count=6000)


def grid_level(stride, h, w, offset=0.0):
    return AnchorGridLevel(float(stride), h, w, offset)


def square_anchors(stride, h, w, size, offset=0.0):
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cx = (xs.reshape(-1).float() + offset) * stride
    cy = (ys.reshape(-1).float() + offset) * stride
    half = size / 2
    return Boxes(torch.stack([cx - half, cy - half, cx + half, cy + half], 1))


def test_interior_center_needs_no_fallback_and_ties_go_to_lower_index():
    # 10 x 10 cells of stride 10, one anchor each, GT centered on the boundary point between
    # four cells: the 4 nearest tie, then 8 more tie at the next distance; k = 9 takes the
    # lower indices among the tied.
    anchors = [square_anchors(10, 10, 10, 40.0)]
    gt = Boxes(torch.tensor([[30.0, 30.0, 60.0, 60.0]]))  # center (45, 45)
    matcher = ATSSMatcher(9)
    prepared = matcher.prepare_anchors(anchors, 1, [grid_level(10, 10, 10)])
    cand = matcher.select_candidates(gt, prepared)
    assert not cand.fallback.any()
    # cells (row, col): the 2x2 around (4.5, 4.5), then 5 of the 8 at distance^2 250, by index
    expected = [44, 45, 54, 55, 34, 35, 43, 46, 53]
    assert cand.indices[0].tolist() == expected
    assert torch.equal(cand.indices, matcher.select_candidates(gt, anchors, 1).indices)


def test_edge_center_takes_the_wide_window_not_the_general_path():
    # A GT centered on the last row's center at the bottom edge: the nearest 9 run along
    # the edge, beyond the 4 x 4 window (the guard refuses it), inside the 6 x 6 one.
    anchors = [square_anchors(10, 20, 20, 40.0)]
    gt = Boxes(torch.tensor([[80.0, 180.0, 120.0, 200.0]]))  # center (100, 190): row 19
    matcher = ATSSMatcher(9)
    prepared = matcher.prepare_anchors(anchors, 1, [grid_level(10, 20, 20)])
    narrow, wide = prepared.plans
    gt_c = torch.tensor([[[100.0, 190.0]]])
    gt_points = torch.view_as_complex(gt_c).unsqueeze(2)
    _, unproven_narrow = narrow.nearest_k(prepared.points, gt_c, gt_points)
    _, unproven_wide = wide.nearest_k(prepared.points, gt_c, gt_points)
    assert unproven_narrow.tolist() == [[True]] and unproven_wide.tolist() == [[False]]
    cand = matcher.select_candidates(gt, prepared)
    assert not cand.fallback.any()  # the wide window proved it
    assert torch.equal(cand.indices, matcher.select_candidates(gt, anchors, 1).indices)


def test_fallback_to_general_path_on_purpose():
    # A GT center far outside a wide, flat level: its nearest 9 are a row along the border,
    # longer than any window: both windows are refused, the general path answers.
    anchors = [square_anchors(10, 3, 40, 40.0)]
    gt = Boxes(torch.tensor([[180.0, -400.0, 220.0, -360.0]]))  # center (200, -380)
    matcher = ATSSMatcher(9)
    prepared = matcher.prepare_anchors(anchors, 1, [grid_level(10, 3, 40)])
    cand = matcher.select_candidates(gt, prepared)
    assert cand.fallback.tolist() == [[True]]
    general = matcher.select_candidates(gt, anchors, 1)
    assert torch.equal(cand.indices, general.indices)
    assert sorted(cand.indices[0].tolist()) == list(range(16, 25))  # row 0, columns 16-24


def test_level_smaller_than_k_takes_all_its_anchors_in_order():
    # 2 x 3 cells, 9 anchors each (54 < k * A = 81): every anchor, nearest first.
    gen_anchors = make_generator([32], 9, 0.0)
    feats = [torch.zeros(1, 1, 2, 3)]
    anchors = gen_anchors(feats)
    gt = Boxes(torch.tensor([[10.0, 5.0, 50.0, 40.0]]))
    matcher = ATSSMatcher(9)
    prepared = matcher.prepare_anchors(anchors, 9, anchor_grid(gen_anchors, feats))
    cand = matcher.select_candidates(gt, prepared)
    assert cand.indices.shape == (1, 54) and sorted(cand.indices[0].tolist()) == list(range(54))
    assert not cand.fallback.any()
    assert torch.equal(cand.indices, matcher.select_candidates(gt, anchors, 9).indices)


def test_no_gt_and_empty_image():
    gen_anchors = make_generator([8, 16], 1, 0.0)
    feats = features_for([8, 16], 64, 96)
    anchors = gen_anchors(feats)
    matcher = ATSSMatcher(9)
    prepared = matcher.prepare_anchors(anchors, 1, anchor_grid(gen_anchors, feats))
    matches, labels = matcher(Boxes(torch.zeros((0, 4))), prepared)
    assert matches.shape == labels.shape == (sum(len(a) for a in anchors),)
    assert not labels.any()


def test_grid_path_only_where_it_applies():
    gen_anchors = make_generator([8, 16], 1, 0.0)
    feats = features_for([8, 16], 64, 96)
    anchors = gen_anchors(feats)
    grid = anchor_grid(gen_anchors, feats)
    matcher = ATSSMatcher(9)
    assert matcher.prepare_anchors(anchors, 1, grid).plans is not None
    assert matcher.prepare_anchors(anchors, 1).plans is None  # no grid: general path

    class Custom(DefaultAnchorGenerator):
        pass

    custom = Custom(sizes=[[64], [128]], aspect_ratios=[1.0], strides=[8, 16], offset=0.0)
    assert anchor_grid(custom, feats) is None  # not Detectron2's own generator


def test_plans_are_cached_per_grid():
    matcher = ATSSMatcher(9)
    gen_anchors = make_generator([8, 16], 1, 0.0)
    feats = features_for([8, 16], 64, 96)
    anchors = gen_anchors(feats)
    grid = anchor_grid(gen_anchors, feats)
    first = matcher.prepare_anchors(anchors, 1, grid).plans
    again = matcher.prepare_anchors(anchors, 1, grid).plans
    assert first[0] is again[0] and first[1] is again[1]
    for i in range(ATSSMatcher._MAX_PLANS + 5):
        feats = features_for([8, 16], 64 + 8 * i, 96)
        matcher.prepare_anchors(gen_anchors(feats), 1, anchor_grid(gen_anchors, feats))
    assert len(matcher._plans) == ATSSMatcher._MAX_PLANS


def test_window_sizes():
    level = [grid_level(8, 50, 50)]
    for topk, narrow in [(1, 2), (4, 3), (9, 4), (10, 5), (16, 5), (17, 6)]:
        assert GridPlan(level, 1, topk, torch.device("cpu"), narrow).window == narrow
        matcher = ATSSMatcher(topk)
        anchors = [square_anchors(8, 50, 50, 32.0)]
        plans = matcher.prepare_anchors(anchors, 1, level).plans
        assert [p.window for p in plans] == [narrow, narrow + 2], topk


def test_bad_grid_is_rejected_naming_the_level():
    anchors = [square_anchors(10, 4, 5, 40.0), square_anchors(20, 2, 3, 80.0)]
    matcher = ATSSMatcher(9)
    with pytest.raises(ValueError, match="grid has 1 levels, the anchors 2"):
        matcher.prepare_anchors(anchors, 1, [grid_level(10, 4, 5)])
    with pytest.raises(ValueError, match="grid level 1 .* does not hold that level's 6 anchors"):
        matcher.prepare_anchors(anchors, 1, [grid_level(10, 4, 5), grid_level(20, 3, 3)])
    for bad in [dict(stride=0.0), dict(height=-1), dict(width=2.5), dict(offset=1.0)]:
        kwargs = {**dict(stride=8.0, height=2, width=2, offset=0.0), **bad}
        with pytest.raises(ValueError, match=f"AnchorGridLevel: {next(iter(bad))} must be"):
            AnchorGridLevel(**kwargs)


@pytest.mark.parametrize("config", ["retinanet_tiny_FPN_atss.yaml", "atss_tiny_FPN.yaml"])
def test_meta_architectures_pass_their_grid(monkeypatch, config):
    """RetinaNetATSS / ATSS training hands the anchor generator's grid to label_anchors."""
    seen = {}
    real = RetinaNetATSS.label_anchors

    def spy(self, anchors, gt_instances, grid=None):
        seen["grid"] = grid
        return real(self, anchors, gt_instances, grid)

    monkeypatch.setattr(RetinaNetATSS, "label_anchors", spy)
    cfg = load_yacs_config(str(REPO / "configs" / "Synthetic" / config), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg)
    inst = Instances((64, 96))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 10.0, 50.0, 40.0]]))
    inst.gt_classes = torch.tensor([0])
    with EventStorage() as storage:
        model([{"image": torch.zeros(3, 64, 96), "instances": inst}])
        assert storage.latest()["atss/grid_fallback"][0] == 0.0
    grid = seen["grid"]
    assert [g.stride for g in grid] == [float(s) for s in model.anchor_generator.strides]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_grid_path_equals_cpu():
    gen = torch.Generator().manual_seed(5)
    for _ in range(200):
        gt, anchors, per_location, grid, topk = random_case(gen)
        matcher = ATSSMatcher(topk)
        expected = matcher(gt, anchors, per_location)
        cuda = [Boxes(a.tensor.cuda()) for a in anchors]
        prepared = matcher.prepare_anchors(cuda, per_location, grid)
        assert prepared.plans is not None
        out = matcher(Boxes(gt.tensor.cuda()), prepared)
        assert all(torch.equal(x.cpu(), y) for x, y in zip(out, expected))
