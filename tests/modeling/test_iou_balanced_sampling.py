"""
Tests of ``iou_balanced_subsample`` / ``IoUBalancedSampler`` (Libra R-CNN's IoU-balanced
negatives and instance-balanced positives): exact counts on hand-sized cases, the plain-loop
reference of d2_sampling.references.iou_balanced on random inputs, the bins the sampler reports,
statistical properties over seeded draws, and argument checking.
"""

import math
import random
import unittest

import torch
from detectron2.modeling.sampling import subsample_labels

from d2_sampling.modeling import (
    IoUBalancedSampler,
    NegativeBins,
    iou_balanced_subsample,
    iou_bin_index,
)
from d2_sampling.references.iou_balanced import iou_balanced_reference

BG = 5  # background label of these tests (5 foreground classes)


def make(neg_ious, pos_gts=(), num_ignored=0, ignored_iou=0.45):
    """labels, ious, gt_indices: positives first (IoU 0.7, class 1), then negatives, ignored."""
    p, n = len(pos_gts), len(neg_ious)
    labels = torch.tensor([1] * p + [BG] * n + [-1] * num_ignored, dtype=torch.int64)
    ious = torch.tensor([0.7] * p + list(neg_ious) + [ignored_iou] * num_ignored)
    gt = torch.tensor(list(pos_gts) + [0] * (n + num_ignored), dtype=torch.int64)
    return labels, ious, gt


def bin_counts(ious, idx, edges):
    """How many of ``ious[idx]`` fall in each half-open interval between consecutive edges."""
    v = ious[idx].tolist()
    return [sum(lo <= x < hi for x in v) for lo, hi in zip(edges[:-1], edges[1:])]


class TestIoUBinIndex(unittest.TestCase):
    def test_edges_go_to_the_lower_bin_and_high_to_the_last(self):
        ious = torch.tensor([0.0, 0.1, 0.25, 0.2501, 0.5, 0.75, 0.99, 1.0, 1.5])
        got = iou_bin_index(ious, 4, 0.0, torch.tensor(1.0))
        self.assertEqual(got.tolist(), [0, 0, 0, 1, 1, 2, 3, 3, 3])
        self.assertEqual(got.dtype, torch.int64)

    def test_low_above_zero(self):
        # edges 0.25, 0.375, 0.5, all exact in float32
        ious = torch.tensor([0.1, 0.125, 0.25, 0.2501, 0.375, 0.4999, 0.5, 0.5001, 0.625])
        got = iou_bin_index(ious, 4, 0.125, torch.tensor(0.625))
        self.assertEqual(got.tolist(), [0, 0, 0, 1, 1, 2, 2, 3, 3])

    def test_zero_width_puts_everything_in_bin_0(self):
        got = iou_bin_index(torch.zeros(4), 3, 0.0, torch.tensor(0.0))
        self.assertEqual(got.tolist(), [0, 0, 0, 0])
        got = iou_bin_index(torch.tensor([0.2, 0.3]), 3, 0.3, torch.tensor(0.3))
        self.assertEqual(got.tolist(), [0, 0])

    def test_one_bin(self):
        got = iou_bin_index(torch.tensor([0.0, 0.3]), 1, 0.0, torch.tensor(0.3))
        self.assertEqual(got.tolist(), [0, 0])


class TestExactCounts(unittest.TestCase):
    # 12 negatives, h = 0.4, K = 3: bins [0, .1333), [.1333, .2667), [.2667, .4].
    NEG = [0.0, 0.01, 0.02, 0.03, 0.05, 0.06, 0.2, 0.25, 0.3, 0.35, 0.38, 0.4]
    EDGES = [0.0, 0.4 / 3, 0.8 / 3, 1.01]

    def test_every_bin_gets_its_share(self):
        labels, ious, gt = make(self.NEG, pos_gts=[0, 0, 1])
        for seed in range(20):
            torch.manual_seed(seed)
            pos, neg = iou_balanced_subsample(labels, ious, 8, 0.25, BG)
            self.assertEqual(pos.numel(), 2)  # int(8 * 0.25)
            self.assertEqual(bin_counts(ious, neg, self.EDGES), [2, 2, 2])
            self.assertEqual(pos.dtype, torch.int64)
            self.assertEqual(neg.dtype, torch.int64)

    def test_short_bin_then_fill_from_the_other_bins(self):
        neg = [0.0, 0.01, 0.02, 0.03, 0.05, 0.06, 0.2, 0.3, 0.35, 0.38, 0.4]  # bin 1: one
        labels, ious, _ = make(neg, pos_gts=[0, 0])
        seen = set()
        for seed in range(30):
            torch.manual_seed(seed)
            pos, idx = iou_balanced_subsample(labels, ious, 8, 0.25, BG)
            counts = bin_counts(ious, idx, self.EDGES)
            self.assertEqual(idx.numel(), 6)
            self.assertEqual(counts[1], 1)  # all the short bin has
            self.assertEqual(counts[0] + counts[2], 5)  # 2 + 2 + one fill
            self.assertIn(counts, ([3, 1, 2], [2, 1, 3]))
            seen.add(tuple(counts))
        self.assertEqual(len(seen), 2)  # the fill comes from either bin

    def test_remainder_of_the_quota_division_is_filled(self):
        labels, ious, _ = make(self.NEG)
        torch.manual_seed(0)
        pos, neg = iou_balanced_subsample(labels, ious, 7, 0.25, BG)
        self.assertEqual(pos.numel(), 0)
        self.assertEqual(neg.numel(), 7)  # 7 // 3 = 2 per bin, plus one
        self.assertTrue(all(c >= 2 for c in bin_counts(ious, neg, self.EDGES)))

    def test_not_more_negatives_than_the_quota_returns_them_all(self):
        labels, ious, _ = make([0.1, 0.2, 0.3], pos_gts=[0], num_ignored=2)
        pos, neg = iou_balanced_subsample(labels, ious, 8, 0.25, BG)
        self.assertEqual(pos.tolist(), [0])
        self.assertEqual(sorted(neg.tolist()), [1, 2, 3])

    def test_fewer_positives_than_the_quota_fills_with_negatives(self):
        labels, ious, gt = make(self.NEG, pos_gts=[3])
        pos, neg = iou_balanced_subsample(labels, ious, 8, 0.5, BG, gt_indices=gt)
        self.assertEqual(pos.tolist(), [0])
        self.assertEqual(neg.numel(), 7)

    def test_no_gt_image(self):
        # All IoUs 0: one bin holds everything; the result is a plain uniform draw.
        labels = torch.full((50,), BG, dtype=torch.int64)
        pos, neg = iou_balanced_subsample(
            labels, torch.zeros(50), 16, 0.25, BG, gt_indices=torch.zeros(50, dtype=torch.int64)
        )
        self.assertEqual(pos.numel(), 0)
        self.assertEqual(neg.numel(), 16)
        self.assertEqual(len(set(neg.tolist())), 16)

    def test_empty_inputs(self):
        empty = torch.zeros(0, dtype=torch.int64)
        pos, neg = iou_balanced_subsample(empty, torch.zeros(0), 8, 0.25, BG, gt_indices=empty)
        self.assertEqual((pos.numel(), neg.numel()), (0, 0))
        labels, ious, _ = make(self.NEG, pos_gts=[0])
        pos, neg = iou_balanced_subsample(labels, ious, 0, 0.25, BG)
        self.assertEqual((pos.numel(), neg.numel()), (0, 0))

    # 6 negatives below 0.1 (the floor set with floor_thr 0.1), then 2, 2, 3 in the bins over
    # [0.1, 0.4] (edges 0.2, 0.3).
    FLOOR_NEG = [0.0, 0.02, 0.04, 0.06, 0.08, 0.09, 0.12, 0.15, 0.22, 0.25, 0.33, 0.36, 0.4]

    def test_floor_set_gets_its_fraction(self):
        labels, ious, _ = make(self.FLOOR_NEG)
        for seed in range(20):
            torch.manual_seed(seed)
            _, neg = iou_balanced_subsample(
                labels, ious, 6, 0.0, BG, floor_thr=0.1, floor_fraction=0.5
            )
            # floor: int(6 * 0.5) = 3; bins: (6 - 3) // 3 = 1 each.
            self.assertEqual(bin_counts(ious, neg, [0.0, 0.1, 0.2, 0.3, 1.01]), [3, 1, 1, 1])

    def test_floor_set_unused_while_balanced_negatives_remain(self):
        labels, ious, _ = make(self.FLOOR_NEG)
        for seed in range(20):
            torch.manual_seed(seed)
            # floor share int(5 * 0) = 0; 5 // 3 = 1 per bin, 2 filled from the 7 balanced.
            _, neg = iou_balanced_subsample(labels, ious, 5, 0.0, BG, floor_thr=0.1)
            self.assertEqual(bin_counts(ious, neg, [0.0, 0.1, 1.01]), [0, 5])
            # 9 = 3 per bin, but the bins hold 2 + 2 + 3: the floor set gives the last 2.
            _, neg = iou_balanced_subsample(labels, ious, 9, 0.0, BG, floor_thr=0.1)
            self.assertEqual(bin_counts(ious, neg, [0.0, 0.1, 1.01]), [2, 7])

    def test_floor_set_smaller_than_its_share(self):
        # floor (IoU < 0.03): 2 members, share int(9 * 0.5) = 4 -> gives 2; bins share 9 - 2.
        labels, ious, _ = make(self.FLOOR_NEG)
        torch.manual_seed(0)
        _, neg = iou_balanced_subsample(
            labels, ious, 9, 0.0, BG, floor_thr=0.03, floor_fraction=0.5
        )
        self.assertEqual(bin_counts(ious, neg, [0.0, 0.03, 1.01]), [2, 7])

    def test_floor_thr_zero_means_an_empty_floor_set(self):
        labels, ious, _ = make(self.NEG)
        torch.manual_seed(0)
        _, a = iou_balanced_subsample(labels, ious, 6, 0.0, BG, floor_thr=0.0, floor_fraction=1.0)
        self.assertEqual(bin_counts(ious, a, self.EDGES), [2, 2, 2])

    def test_instance_balanced_water_filling(self):
        # Candidates per GT: 1, 5, 2, 10; 12 positives wanted. Level 4: GT0 and GT2 give all
        # (1 and 2), GT1 and GT3 get 4 each, and one of them one more.
        gts = [0] + [1] * 5 + [2] * 2 + [3] * 10
        labels, ious, gt = make([0.1] * 30, pos_gts=gts)
        outcomes = set()
        for seed in range(30):
            torch.manual_seed(seed)
            pos, neg = iou_balanced_subsample(labels, ious, 24, 0.5, BG, gt_indices=gt)
            per_gt = torch.bincount(gt[pos], minlength=4).tolist()
            self.assertEqual(per_gt[0], 1)
            self.assertEqual(per_gt[2], 2)
            self.assertIn((per_gt[1], per_gt[3]), [(5, 4), (4, 5)])
            self.assertEqual(neg.numel(), 12)
            outcomes.add((per_gt[1], per_gt[3]))
        self.assertEqual(len(outcomes), 2)  # the remainder goes to a random GT

    def test_positives_without_gt_indices_are_uniform(self):
        gts = [0] * 20 + [1] * 2
        labels, ious, gt = make([0.1] * 10, pos_gts=gts)
        torch.manual_seed(0)
        pos, _ = iou_balanced_subsample(labels, ious, 8, 0.5, BG)
        self.assertEqual(pos.numel(), 4)
        torch.manual_seed(0)
        pos, _ = iou_balanced_subsample(labels, ious, 8, 0.5, BG, gt_indices=gt)
        self.assertEqual(torch.bincount(gt[pos], minlength=2).tolist(), [2, 2])

    def test_seeded_regression_pin(self):
        labels, ious, gt = make(self.NEG, pos_gts=[0, 1, 1, 1])
        torch.manual_seed(1234)
        pos, neg = iou_balanced_subsample(labels, ious, 8, 0.25, BG, gt_indices=gt)
        self.assertTrue(torch.equal(pos.sort().values, torch.tensor([0, 3])))
        self.assertTrue(torch.equal(neg.sort().values, torch.tensor([5, 8, 10, 11, 12, 13])))


class TestAgainstReference(unittest.TestCase):
    def test_random_inputs(self):
        rng = random.Random(0)
        for case in range(300):
            r = rng.randint(0, 80)
            labels = torch.tensor(
                [rng.choice([BG, BG, BG, -1, 0, 3]) for _ in range(r)], dtype=torch.int64
            )
            # IoUs from a small pool: ties are common (values exactly on a bin edge are tested
            # in TestIoUBinIndex; here float32 vs float64 rounding would make them ambiguous)
            pool = [rng.random() * 0.6 for _ in range(8)]
            ious = torch.tensor([rng.choice(pool) for _ in range(r)])
            gt = torch.tensor([rng.randint(0, 4) for _ in range(r)], dtype=torch.int64)
            num_samples = rng.randint(0, 60)
            pf = rng.choice([0.0, 0.25, 0.5, 1.0])
            num_bins = rng.randint(1, 5)
            floor_thr = rng.choice([-1.0, 0.0, 0.0625, 0.125, 0.25])  # exact in float32
            floor_fraction = rng.choice([0.0, 0.3, 1.0])
            use_gt = rng.random() < 0.7
            torch.manual_seed(case)
            pos, neg = iou_balanced_subsample(
                labels,
                ious,
                num_samples,
                pf,
                BG,
                num_bins=num_bins,
                floor_thr=floor_thr,
                floor_fraction=floor_fraction,
                gt_indices=gt if use_gt else None,
            )
            ref = iou_balanced_reference(
                labels, ious, gt, num_samples, pf, num_bins, floor_thr, floor_fraction, BG
            )
            msg = f"case {case}"
            pos_l, neg_l = pos.tolist(), neg.tolist()
            # no duplicates, right kinds, right totals
            self.assertEqual(len(set(pos_l)), len(pos_l), msg)
            self.assertEqual(len(set(neg_l)), len(neg_l), msg)
            self.assertTrue(all(labels[i] not in (-1, BG) for i in pos_l), msg)
            self.assertTrue(all(labels[i] == BG for i in neg_l), msg)
            self.assertEqual(len(pos_l), ref["num_pos"], msg)
            self.assertEqual(len(neg_l), ref["num_neg"], msg)
            if use_gt and len(pos_l) < sum(ref["cand"].values()):
                # water-filling: exhausted GTs give all; the others get t or t + 1
                taken = {g: 0 for g in ref["cand"]}
                for i in pos_l:
                    taken[int(gt[i])] += 1
                t = ref["level"]
                for g, c in ref["cand"].items():
                    self.assertIn(taken[g] - min(c, t), (0, 1), msg)
                    if c <= t:
                        self.assertEqual(taken[g], c, msg)
                left = [taken[g] for g, c in ref["cand"].items() if taken[g] < c]
                if left:
                    self.assertLessEqual(max(left) - min(left), 1, msg)
            if "members" in ref:
                got = set(neg_l)
                self.assertEqual(len(got & ref["floor"]), ref["floor_total"], msg)
                self.assertEqual(len(got - ref["floor"]), ref["balanced_total"], msg)
                for m, q in zip(ref["members"], ref["per_bin"]):
                    self.assertGreaterEqual(len(got & set(m)), q, msg)


class TestReportedBins(unittest.TestCase):
    """``return_bins=True``: the sampler reports the bins it used; nothing recomputes them."""

    def test_hand_sized(self):
        labels, ious, gt = make(TestExactCounts.NEG, pos_gts=[0, 0, 1])
        torch.manual_seed(0)
        pos, neg, bins = iou_balanced_subsample(labels, ious, 8, 0.25, BG, return_bins=True)
        self.assertIsInstance(bins, NegativeBins)
        self.assertEqual((bins.num_bins, bins.low), (3, 0.0))
        self.assertAlmostEqual(float(bins.high), 0.4, places=6)
        self.assertEqual(bins.counts().tolist(), [2, 2, 2, 0])  # no floor set: last is 0
        self.assertEqual(bins.groups.shape, neg.shape)
        self.assertEqual(bins.groups.dtype, torch.int64)
        # floor (IoU < 0.1): int(6 * 0.5) = 3, bins over [0.1, 0.4]: 1 each.
        labels, ious, _ = make(TestExactCounts.FLOOR_NEG)
        _, neg, bins = iou_balanced_subsample(
            labels, ious, 6, 0.0, BG, floor_thr=0.1, floor_fraction=0.5, return_bins=True
        )
        self.assertEqual(bins.counts().tolist(), [1, 1, 1, 3])
        self.assertEqual(bins.low, 0.1)
        self.assertTrue(all(ious[i] < 0.1 for i in neg[bins.groups == 3].tolist()))

    def test_all_negatives_taken_and_none(self):
        # Not more negatives than the quota: all of them, and still their bins (h = 0.3).
        labels, ious, _ = make([0.05, 0.15, 0.3], pos_gts=[0], num_ignored=2)
        _, neg, bins = iou_balanced_subsample(labels, ious, 8, 0.25, BG, return_bins=True)
        self.assertEqual(neg.tolist(), [1, 2, 3])
        self.assertEqual(bins.groups.tolist(), [0, 1, 2])
        # No negative at all.
        labels, ious, _ = make([], pos_gts=[0, 1])
        _, neg, bins = iou_balanced_subsample(labels, ious, 8, 0.25, BG, return_bins=True)
        self.assertEqual((neg.numel(), bins.groups.numel(), float(bins.high)), (0, 0, 0.0))
        self.assertEqual(bins.counts().tolist(), [0, 0, 0, 0])

    def test_random_inputs_match_the_bins_recomputed_from_the_output(self):
        rng = random.Random(1)
        for case in range(200):
            r = rng.randint(0, 120)
            labels = torch.tensor(
                [rng.choice([BG, BG, BG, -1, 0, 3]) for _ in range(r)], dtype=torch.int64
            )
            ious = torch.rand(r, generator=torch.Generator().manual_seed(case)) * 0.6
            gt = torch.tensor([rng.randint(0, 4) for _ in range(r)], dtype=torch.int64)
            kwargs = dict(
                num_bins=rng.randint(1, 5),
                floor_thr=rng.choice([-1.0, 0.0, 0.1, 0.25]),
                floor_fraction=rng.choice([0.0, 0.3, 1.0]),
                gt_indices=gt if rng.random() < 0.7 else None,
            )
            args = (labels, ious, rng.randint(0, 60), rng.choice([0.0, 0.25, 1.0]), BG)
            torch.manual_seed(case)
            pos, neg = iou_balanced_subsample(*args, **kwargs)
            torch.manual_seed(case)
            pos2, neg2, bins = iou_balanced_subsample(*args, return_bins=True, **kwargs)
            torch.manual_seed(case)
            sampler = IoUBalancedSampler(
                kwargs["num_bins"], kwargs["floor_thr"], kwargs["floor_fraction"]
            )
            pos3, neg3 = sampler(*args, gt_indices=kwargs["gt_indices"])
            msg = f"case {case}"
            # Reporting the bins, or using the sampler object, draws exactly the same.
            for p, n in ((pos2, neg2), (pos3, neg3)):
                self.assertTrue(torch.equal(p, pos) and torch.equal(n, neg), msg)
            # The reported groups are the bins of the sampled negatives, as documented.
            k, floor_thr = kwargs["num_bins"], kwargs["floor_thr"]
            all_neg = ious[labels == BG]
            high = all_neg.max() if all_neg.numel() else torch.zeros(())
            want = iou_bin_index(ious[neg], k, max(floor_thr, 0.0), high)
            if floor_thr >= 0:
                want[ious[neg] < floor_thr] = k
            self.assertTrue(torch.equal(bins.groups, want), msg)
            self.assertEqual(float(bins.high), float(high), msg)
            self.assertEqual(int(bins.counts().sum()), neg.numel(), msg)


class TestUniformity(unittest.TestCase):
    """Selection frequencies over many seeded draws against their exact probabilities."""

    N = 3000

    def assertFrequencies(self, hits, expected):
        for i, p in expected.items():
            freq = hits.get(i, 0) / self.N
            tol = 5 * math.sqrt(p * (1 - p) / self.N) + 1e-9
            self.assertLess(abs(freq - p), tol, f"index {i}: {freq:.3f} vs {p:.3f}")

    def test_inside_a_bin_and_across_the_fill(self):
        # K = 3, h = 0.45: bin 0 = 6 negatives, bin 1 = 3, bin 2 = 1; quota 7 -> 2, 2, 1, then
        # 2 filled uniformly from the 5 left (4 in bin 0, 1 in bin 1). Reusing the first draw's
        # order for the fill would give other frequencies.
        neg = [0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.2, 0.22, 0.25, 0.45]
        labels, ious, _ = make(neg)
        hits = {}
        torch.manual_seed(0)
        for _ in range(self.N):
            _, idx = iou_balanced_subsample(labels, ious, 7, 0.0, BG)
            for i in idx.tolist():
                hits[i] = hits.get(i, 0) + 1
        expected = {i: 2 / 6 + 4 / 6 * 2 / 5 for i in range(6)}
        expected.update({i: 2 / 3 + 1 / 3 * 2 / 5 for i in range(6, 9)})
        expected[9] = 1.0
        self.assertFrequencies(hits, expected)

    def test_positives_inside_a_gt_and_the_remainder_gt(self):
        # GT 0: 6 candidates, GT 1: 3, GT 2: 3; 7 positives -> level 2, one GT gets a 3rd.
        gts = [0] * 6 + [1] * 3 + [2] * 3
        labels, ious, gt = make([0.1] * 20, pos_gts=gts)
        hits = {}
        torch.manual_seed(0)
        for _ in range(self.N):
            pos, _ = iou_balanced_subsample(labels, ious, 14, 0.5, BG, gt_indices=gt)
            for i in pos.tolist():
                hits[i] = hits.get(i, 0) + 1
        # each GT gets the extra one with probability 1/3
        expected = {i: (2 + 1 / 3) / 6 for i in range(6)}
        expected.update({i: (2 + 1 / 3) / 3 for i in range(6, 12)})
        self.assertFrequencies(hits, expected)


class TestUpperBinShare(unittest.TestCase):
    """
    The point of the sampler, over many seeded draws: on pools where most negatives have an
    IoU near 0 (as early in training), the negatives it picks sit in the upper IoU bins far
    more often than uniform sampling's. (The end-to-end tests only check that these shares are
    logged: in a real run they depend on the proposals, i.e. on the weights.)
    """

    def share_of_upper_bins(self, exponent, draws=100):
        """Mean over seeded draws of the upper bins' share (balanced, uniform) and mean IoUs."""
        balanced, uniform = [], []
        self.mean_iou = {"balanced": 0.0, "uniform": 0.0}
        for seed in range(draws):
            g = torch.Generator().manual_seed(seed)
            # 1000 negatives, IoU 0.5 * u^exponent: skewed towards 0; 100 positives.
            neg_ious = 0.499 * torch.rand(1000, generator=g) ** exponent
            labels, ious, gt = make(neg_ious.tolist(), pos_gts=[i % 5 for i in range(100)])
            torch.manual_seed(seed)
            _, neg, bins = iou_balanced_subsample(
                labels, ious, 256, 0.25, BG, gt_indices=gt, return_bins=True
            )
            counts = bins.counts()
            self.assertEqual(neg.numel(), 192)
            # Guaranteed in every draw: each upper bin gives min(its size, 192 // 3).
            sizes = torch.bincount(iou_bin_index(neg_ious, 3, 0.0, neg_ious.max()), minlength=3)
            self.assertGreaterEqual(int(counts[1:3].sum()), int(sizes[1:].clamp(max=64).sum()))
            balanced.append(float(counts[1:3].sum()) / neg.numel())
            _, uneg = subsample_labels(labels, 256, 0.25, BG)
            self.mean_iou["balanced"] += float(ious[neg].mean()) / draws
            self.mean_iou["uniform"] += float(ious[uneg].mean()) / draws
            upper = iou_bin_index(ious[uneg], 3, 0.0, neg_ious.max()) > 0
            uniform.append(float(upper.float().mean()))
        return sum(balanced) / draws, sum(uniform) / draws

    def test_upper_bins_filled_when_they_hold_their_share(self):
        # u^3: ~31% of the negatives above h / 3, every bin holds more than 64.
        balanced, uniform = self.share_of_upper_bins(3)
        self.assertAlmostEqual(balanced, 2 / 3, places=6)  # exactly 64 + 64 of 192, every draw
        self.assertLess(abs(uniform - 0.31), 0.03)

    def test_upper_bins_short(self):
        # u^8: ~13% above h / 3 and ~5% in the top bin, which runs short; the fill is random.
        balanced, uniform = self.share_of_upper_bins(8)
        self.assertGreater(balanced, 0.55)
        self.assertLess(uniform, 0.16)
        self.assertGreater(balanced, 3.5 * uniform)
        # Hence picked negatives of a higher IoU on average (what tools/plot_sampled_iou.py shows).
        self.assertGreater(self.mean_iou["balanced"], 2 * self.mean_iou["uniform"])


class TestDeviceAndDtypes(unittest.TestCase):
    def test_float64_ious_and_int32_gt(self):
        labels, ious, gt = make(TestExactCounts.NEG, pos_gts=[0, 1, 1])
        pos, neg = iou_balanced_subsample(labels, ious.double(), 8, 0.25, BG, gt_indices=gt.int())
        self.assertEqual((pos.numel(), neg.numel()), (2, 6))

    @unittest.skipUnless(torch.cuda.is_available(), "needs CUDA")
    def test_cuda(self):
        labels, ious, gt = make(TestExactCounts.NEG, pos_gts=[0, 1, 1])
        pos, neg = iou_balanced_subsample(
            labels.cuda(), ious.cuda(), 8, 0.25, BG, gt_indices=gt.cuda()
        )
        self.assertEqual(neg.device.type, "cuda")
        self.assertEqual(bin_counts(ious, neg.cpu(), TestExactCounts.EDGES), [2, 2, 2])


class TestBadValues(unittest.TestCase):
    CASES = [
        (dict(num_bins=0), "num_bins"),
        (dict(num_bins=-2), "num_bins"),
        (dict(num_bins=2.5), "num_bins"),
        (dict(floor_thr=1.0), "floor_thr"),
        (dict(floor_thr=3.0), "floor_thr"),
        (dict(floor_thr=float("nan")), "floor_thr"),
        (dict(floor_fraction=-0.1), "floor_fraction"),
        (dict(floor_fraction=1.5), "floor_fraction"),
    ]

    def test_value_errors_name_the_argument(self):
        # A pure function: its own argument names, no config keys.
        labels, ious, _ = make([0.1, 0.2])
        for kwargs, arg in self.CASES:
            with self.assertRaisesRegex(ValueError, "^" + arg + " must") as cm:
                iou_balanced_subsample(labels, ious, 4, 0.25, BG, **kwargs)
            self.assertIn(repr(list(kwargs.values())[0]), str(cm.exception))
            self.assertNotIn("MODEL.", str(cm.exception))
            # The sampler object checks the same, once, when it is built.
            with self.assertRaisesRegex(ValueError, "^" + arg + " must"):
                IoUBalancedSampler(**kwargs)
        for pf in (-0.5, 1.01):
            with self.assertRaisesRegex(ValueError, r"^positive_fraction must.*" + repr(pf)):
                iou_balanced_subsample(labels, ious, 4, pf, BG)

    def test_callers_can_name_the_values_their_way(self):
        from d2_sampling.modeling.iou_balanced_sampling import check_iou_balanced_args

        with self.assertRaisesRegex(ValueError, r"^KEY\.BINS must be an integer >= 1, got 0$"):
            check_iou_balanced_args(0, -1.0, 0.0, names={"num_bins": "KEY.BINS"})
        check_iou_balanced_args(1, 0.999, 1.0, 0.0)  # edge values are accepted

    def test_shape_mismatch(self):
        labels, ious, gt = make([0.1, 0.2])
        with self.assertRaises(ValueError):
            iou_balanced_subsample(labels, ious[:1], 4, 0.25, BG)
        with self.assertRaises(ValueError):
            iou_balanced_subsample(labels, ious, 4, 0.25, BG, gt_indices=gt[:1])


if __name__ == "__main__":
    unittest.main()
