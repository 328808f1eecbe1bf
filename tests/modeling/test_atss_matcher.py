"""ATSSMatcher: hand-sized exact cases, edge cases, and agreement with two references."""

import json
import subprocess
import sys
import unittest

import pytest
import torch
from detectron2.structures import Boxes

from d2_sampling.modeling import ATSSCandidates, ATSSMatcher
from d2_sampling.references.atss import boundary_tied_gts, mmdet_atss_assign, reference_atss

from helpers import REPO


def boxes(*rows):
    return Boxes(torch.tensor(rows, dtype=torch.float32).reshape(-1, 4))


# Level 0: four 10x10 anchors in a row (centers x = 5, 15, 25, 35; y = 5).
# Level 1: one 40x10 anchor (center 20, 5): fewer anchors than k = 2.
ROW = boxes([0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10])
WIDE = boxes([0, 0, 40, 10])
LEVELS = [ROW, WIDE]


class TestATSSMatcherExact(unittest.TestCase):
    def test_two_gts_tie_on_shared_anchor_edge_center_small_level(self):
        # GT0 [0,0,20,10]: candidates a0, a1 (level 0), a4 (level 1, the only anchor there);
        #   every IoU is 0.5 -> threshold 0.5 (std 0); a4's center (20, 5) lies exactly on
        #   GT0's right edge -> not positive. Positives: a0, a1.
        # GT1 [10,0,30,10]: candidates a1, a2, a4, all IoU 0.5; a4's center is inside.
        #   Positives: a1, a2, a4.
        # a1 is claimed by both with the same IoU 0.5 -> the lower GT index, 0.
        matcher = ATSSMatcher(topk=2)
        gt = boxes([0, 0, 20, 10], [10, 0, 30, 10])
        cands = matcher.select_candidates(gt, LEVELS)
        self.assertEqual(cands.indices.tolist(), [[0, 1, 4], [1, 2, 4]])
        self.assertTrue(
            torch.equal(cands.thresholds, torch.tensor([0.5, 0.5], dtype=torch.float64))
        )
        self.assertEqual(cands.is_positive.tolist(), [[True, True, False], [True, True, True]])
        matches, labels = matcher(gt, LEVELS)
        self.assertEqual(matches.dtype, torch.int64)
        self.assertEqual(labels.dtype, torch.int8)
        self.assertEqual(matches.tolist(), [0, 0, 1, 0, 1])
        self.assertEqual(labels.tolist(), [1, 1, 1, 0, 1])

    def test_anchor_claimed_by_two_gts_goes_to_higher_iou(self):
        # GT0 [0,0,20,10]: positives a0, a1 (IoU 0.5 each).
        # GT1 [2,0,20,10] (center 11, 5): candidates a1 (d 4), a0 (d 6), a4; IoUs 5/9, 0.4,
        #   0.45 -> threshold 0.5479...: only a1 (IoU 0.5556, center inside) is positive.
        # a1 is claimed by GT0 (0.5) and GT1 (0.5556) -> GT1.
        matcher = ATSSMatcher(topk=2)
        gt = boxes([0, 0, 20, 10], [2, 0, 20, 10])
        cands = matcher.select_candidates(gt, LEVELS)
        self.assertEqual(cands.indices.tolist(), [[0, 1, 4], [1, 0, 4]])
        ious = torch.tensor([0.5, 0.4, 0.45, 100 / 180])
        self.assertTrue(torch.allclose(cands.ious[1], ious[[3, 1, 2]]))
        mean = ious[1:].double().mean()
        expected = mean + ious[1:].double().std()
        self.assertAlmostEqual(cands.thresholds[1].item(), expected.item(), places=6)
        matches, labels = matcher(gt, LEVELS)
        self.assertEqual(matches.tolist(), [0, 1, 0, 0, 0])
        self.assertEqual(labels.tolist(), [1, 1, 0, 0, 0])

    def test_assign_resolves_claims_the_same_for_float32_and_float64_ious(self):
        # 3 GTs x 6 candidates over 6 anchors (a GT may list an anchor twice here; assign does
        # not mind). Anchor 0: only non-positive claims -> background. Anchor 1: GT0 0.5 and
        # GT1 0.5 tie -> GT0; GT2's 0.7 is not positive. Anchor 2: GT1 0.25 beats GT2 0.2.
        # Anchor 3: GT2 alone, IoU -0.0 yet positive: counts as 0. Anchor 4: non-positive
        # claims only. Anchor 5: GT2 0.9 beats GT0 0.3.
        t, f = True, False
        indices = torch.tensor([[1, 5, 4, 1, 5, 4], [1, 2, 0, 1, 2, 0], [1, 2, 3, 5, 4, 0]])
        ious = torch.tensor(
            [
                [0.5, 0.3, 0.8, 0.5, 0.3, 0.8],
                [0.5, 0.25, 0.1, 0.5, 0.25, 0.1],
                [0.7, 0.2, -0.0, 0.9, 0.6, 0.4],
            ]
        )
        positive = torch.tensor([[t, t, f, t, t, f], [t, t, f, t, t, f], [f, t, t, t, f, f]])
        for dtype in (torch.float32, torch.float64):  # the keyed path, the two-scatter one
            cands = ATSSCandidates(
                indices=indices,
                ious=ious.to(dtype),
                thresholds=torch.zeros(3, dtype=torch.float64),
                is_positive=positive.clone(),
                level_sizes=[6],
            )
            matches, labels = ATSSMatcher.assign(cands)
            self.assertEqual(matches.tolist(), [0, 0, 1, 2, 0, 2], dtype)
            self.assertEqual(labels.tolist(), [0, 1, 1, 1, 0, 1], dtype)
            self.assertEqual((matches.dtype, labels.dtype), (torch.int64, torch.int8))
            self.assertTrue(torch.equal(cands.is_positive, positive))  # input left alone

    def test_distance_tie_at_the_kth_place_goes_to_lower_index(self):
        # GT [10,0,30,10] is centered at x = 20, equally far (5) from a1 and a2; with k = 1
        # only one can be a candidate: the lower index, a1.
        matcher = ATSSMatcher(topk=1)
        gt = boxes([10, 0, 30, 10])
        self.assertEqual(matcher.select_candidates(gt, LEVELS).indices.tolist(), [[1, 4]])
        # The same anchors listed in reverse order: the lower index is now the other one.
        rev = boxes(*ROW.tensor.flip(0).tolist())
        self.assertEqual(matcher.select_candidates(gt, [rev, WIDE]).indices.tolist(), [[1, 4]])

    def test_zero_gt_all_background(self):
        matcher = ATSSMatcher()
        matches, labels = matcher(boxes(), LEVELS)
        self.assertEqual(matches.tolist(), [0] * 5)
        self.assertEqual(labels.tolist(), [0] * 5)
        self.assertEqual(labels.dtype, torch.int8)
        cands = matcher.select_candidates(boxes(), LEVELS)
        self.assertEqual(tuple(cands.indices.shape), (0, 5))  # min(9, 4) + min(9, 1)

    def test_no_anchors(self):
        matches, labels = ATSSMatcher()(boxes([0, 0, 5, 5]), [boxes()])
        self.assertEqual(matches.numel(), 0)
        self.assertEqual(labels.numel(), 0)

    def test_degenerate_gt_gets_nothing_and_changes_nothing(self):
        matcher = ATSSMatcher(topk=2)
        good = [0, 0, 20, 10]
        base_m, base_l = matcher(boxes(good), LEVELS)
        # zero area, zero width: no center is strictly inside; no NaN anywhere.
        gt = boxes(good, [15, 5, 15, 5], [25, 0, 25, 10])
        cands = matcher.select_candidates(gt, LEVELS)
        self.assertFalse(torch.isnan(cands.thresholds).any())
        self.assertFalse(cands.is_positive[1:].any())
        matches, labels = matcher(gt, LEVELS)
        self.assertTrue(torch.equal(matches, base_m))
        self.assertTrue(torch.equal(labels, base_l))

    def test_anchors_per_location_multiplies_candidates(self):
        # Two anchors per location (10x10 and 20x20 at the same center): k * A per level.
        centers = [(5.0, 5.0), (15.0, 5.0), (25.0, 5.0)]
        rows = []
        for cx, cy in centers:
            for s in (10.0, 20.0):
                rows.append([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2])
        level = boxes(*rows)
        gt = boxes([0, 0, 20, 10])
        self.assertEqual(ATSSMatcher(1).select_candidates(gt, [level]).indices.shape[1], 1)
        cands = ATSSMatcher(1).select_candidates(gt, [level], anchors_per_location=2)
        self.assertEqual(cands.indices.shape[1], 2)
        self.assertEqual(sorted(cands.indices[0].tolist()), [0, 1])  # tie at d=5: lower locs
        self.assertEqual(ATSSMatcher(1).select_candidates(gt, [level], [2]).indices.shape[1], 2)

    def test_anchors_per_location_per_level(self):
        # A = 2 on level 0 (k x A = 2 candidates of its 4), A = 1 on level 1 (its 1 anchor).
        matcher = ATSSMatcher(topk=1)
        gt = boxes([0, 0, 20, 10])
        self.assertEqual(
            matcher.select_candidates(gt, LEVELS, [2, 1]).indices.tolist(), [[0, 1, 4]]
        )
        self.assertEqual(matcher.select_candidates(gt, LEVELS, 1).indices.tolist(), [[0, 4]])

    def test_bad_anchors_per_location_names_the_argument(self):
        gt = boxes([0, 0, 20, 10])
        for value in (0, -1, [1], [1, 0], [1, 2, 3], 1.5, True):
            with self.assertRaises(ValueError) as ctx:
                ATSSMatcher()(gt, LEVELS, value)
            self.assertIn("ATSSMatcher: anchors_per_location", str(ctx.exception))
            self.assertIn(repr(value), str(ctx.exception))

    def test_single_candidate_std_zero(self):
        # One anchor in the whole image: std is undefined; documented as 0.
        matcher = ATSSMatcher()
        matches, labels = matcher(boxes([0, 0, 20, 20]), [boxes([5, 5, 15, 15])])
        self.assertEqual(labels.tolist(), [1])

    def test_chunking_does_not_change_results(self):
        gen = torch.Generator().manual_seed(5)
        for _ in range(5):
            gt, levels, per_loc = random_scene(gen, quantized=False)
            a = ATSSMatcher(3)(gt, levels, per_loc)
            b = ATSSMatcher(3, max_chunk_elements=1)(gt, levels, per_loc)
            self.assertTrue(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]))

    def test_regression_pin_coco_sized_scene(self):
        # Detectron2's anchors for an 800 x 1216 input over P3-P7, one 8S anchor per location
        # (20,267 anchors), and 7 GT boxes of very different shapes. Pinned outputs.
        from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

        strides = [8, 16, 32, 64, 128]
        gen = DefaultAnchorGenerator(
            sizes=[[8 * s] for s in strides], aspect_ratios=[1.0], strides=strides, offset=0.0
        )
        anchors = gen([torch.zeros(1, 1, -(-800 // s), -(-1216 // s)) for s in strides])
        gt = boxes(
            [591.84, 581.91, 615.06, 647.25],
            [33.04, 0.0, 182.14, 225.06],
            [367.53, 496.26, 380.12, 518.27],
            [526.72, 514.15, 665.19, 800.0],
            [535.37, 337.8, 572.72, 673.89],
            [403.56, 283.1, 444.95, 359.65],
            [0.0, 131.54, 268.47, 138.63],
        )
        matcher = ATSSMatcher(9)
        matches, labels = matcher(gt, anchors)
        fg = labels.bool()
        self.assertEqual(len(labels), 20267)
        self.assertEqual(torch.bincount(matches[fg], minlength=7).tolist(), [8, 12, 4, 12, 7, 9, 3])
        self.assertEqual(int(fg.nonzero().sum()), 761933)
        thresholds = matcher.select_candidates(gt, anchors).thresholds
        expected = [0.215846, 0.437429, 0.043837, 0.402549, 0.184993, 0.374591, 0.063909]
        self.assertTrue(
            torch.allclose(thresholds, torch.tensor(expected, dtype=torch.float64), atol=1e-6)
        )

    def test_bad_hyperparameters_name_the_argument(self):
        # A pure class names its own arguments; the yacs keys are the wrappers' business
        # (tests/modeling/meta_arch/test_atss.py).
        for kwargs in [
            {"topk": 0},
            {"topk": -3},
            {"topk": 2.5},
            {"topk": True},
            {"center_margin": -0.1},
            {"center_margin": float("nan")},
            {"center_margin": "0.1"},
            {"max_chunk_elements": 0},
        ]:
            with self.assertRaises(ValueError) as ctx:
                ATSSMatcher(**kwargs)
            [(name, value)] = kwargs.items()
            self.assertIn(f"ATSSMatcher: {name} must be", str(ctx.exception))
            self.assertIn(repr(value), str(ctx.exception))
            self.assertNotIn("MODEL.", str(ctx.exception))


def random_scene(gen, quantized=True, max_levels=4):
    """
    Random anchor grids (1-3 anchors per location, some levels with fewer than k anchors) and
    GT boxes; ``quantized`` puts every coordinate on a 1/4 grid in a 256 px image so float32
    distances are exact and distance ties are frequent.
    """

    def rnd(*shape):
        return torch.rand(*shape, generator=gen)

    per_loc = int(torch.randint(1, 4, (1,), generator=gen))
    levels = []
    stride = 8
    for _ in range(int(torch.randint(2, max_levels + 1, (1,), generator=gen))):
        n = max(1, 256 // stride)
        h, w = int(torch.randint(1, n + 1, (1,), generator=gen)), n
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cx = (xs.reshape(-1, 1).float() + 0.5) * stride
        cy = (ys.reshape(-1, 1).float() + 0.5) * stride
        sizes = torch.tensor([4.0, 6.0, 8.0][:per_loc]) * stride
        half = sizes[None, :] / 2
        lvl = torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1).reshape(-1, 4)
        levels.append(Boxes(lvl))
        stride *= 2
    g = int(torch.randint(0, 12, (1,), generator=gen))
    xy = rnd(g, 2) * 256
    wh = torch.exp(rnd(g, 2) * 4.5) + 1
    gt = torch.cat([xy - wh / 2, xy + wh / 2], 1).clamp(0, 256)
    if g > 2:
        gt[1] = gt[0]  # duplicate GT: every anchor of it is claimed twice
        gt[2, 2:] = gt[2, :2]  # degenerate GT
    if quantized:
        gt = torch.round(gt * 4) / 4
    return Boxes(gt), levels, per_loc


def test_agrees_with_paper_reference_on_random_scenes():
    gen = torch.Generator().manual_seed(0)
    checked_pos = tied_scenes = 0
    for _ in range(60):
        gt, levels, per_loc = random_scene(gen)
        topk = int(torch.randint(1, 10, (1,), generator=gen))
        matcher = ATSSMatcher(topk)
        matches, labels = matcher(gt, levels, per_loc)
        ref_m, ref_l = reference_atss(
            gt.tensor.tolist(), [lv.tensor.tolist() for lv in levels], topk, per_loc
        )
        assert labels.tolist() == ref_l
        assert matches.tolist() == ref_m
        checked_pos += sum(ref_l)
        sizes = [len(lv) for lv in levels]
        flat = Boxes.cat(levels).tensor
        tied_scenes += bool(
            boundary_tied_gts(gt.tensor, flat, sizes, topk * per_loc, include_sqrt=False).any()
        )
    assert checked_pos > 100  # the scenes do produce positives
    assert tied_scenes > 5  # and distance ties at the k-th place, where the tie rule decides


def test_agrees_with_paper_reference_with_per_level_anchors_per_location():
    gen = torch.Generator().manual_seed(4)
    for _ in range(20):
        gt, levels, _ = random_scene(gen)
        per_level = torch.randint(1, 4, (len(levels),), generator=gen).tolist()
        matches, labels = ATSSMatcher(2)(gt, levels, per_level)
        ref_m, ref_l = reference_atss(
            gt.tensor.tolist(), [lv.tensor.tolist() for lv in levels], 2, per_level
        )
        assert (labels.tolist(), matches.tolist()) == (ref_l, ref_m)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_same_results_and_no_host_sync():
    gen = torch.Generator().manual_seed(3)
    scenes = [random_scene(gen, quantized=i % 2 == 0) for i in range(10)]
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        for gt, levels, per_loc in scenes:
            cuda_gt = Boxes(gt.tensor.cuda())
            cuda_levels = [Boxes(lv.tensor.cuda()) for lv in levels]
            out = ATSSMatcher(4, max_chunk_elements=999)(cuda_gt, cuda_levels, per_loc)
            torch.cuda.set_sync_debug_mode("default")
            expected = ATSSMatcher(4, max_chunk_elements=999)(gt, levels, per_loc)
            assert all(torch.equal(x.cpu(), y) for x, y in zip(out, expected))
            torch.cuda.set_sync_debug_mode("error")
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_agrees_with_mmdetection_algorithm_on_random_scenes():
    gen = torch.Generator().manual_seed(1)
    for _ in range(30):
        gt, levels, per_loc = random_scene(gen, quantized=False)
        gt = Boxes(gt.tensor + torch.rand(gt.tensor.shape, generator=gen) * 1e-3)
        matches, labels = ATSSMatcher(9)(gt, levels, per_loc)
        ref, _ = mmdet_atss_assign(
            gt.tensor, Boxes.cat(levels).tensor, [len(lv) for lv in levels], 9 * per_loc
        )
        ours = torch.where(labels.bool(), matches + 1, torch.zeros_like(matches))
        assert torch.equal(ours, ref)


@pytest.mark.slow
def test_benchmark_quick_runs(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "bench_atss.py"),
            "--quick",
            "--steady",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "grid x" in proc.stdout and "grid / general" in proc.stdout
    res = json.loads(out.read_text())
    assert all(r["identical"] and r["grid_equals_general"] for r in res["matcher"])
    assert all(r["grid_path"] for r in res["matcher"])  # the quick cases have a grid
    assert all(r["ours_ms"] > 0 and r["reference_ms"] > 0 for r in res["matcher"])
    assert any("ours_peak_mb" in r for r in res["matcher"])
    assert all(r["ours_steady_ms"] > 0 and r["speedup_steady"] > 0 for r in res["matcher"])
    assert "Steady state" in proc.stdout
    pinned = res["pinned_cpus"]
    assert pinned is None or len(pinned) == res["threads"]  # pinned to as many CPUs as threads
    assert res["training"]["atss_ms"] > 0 and res["training"]["retinanet_ms"] > 0
