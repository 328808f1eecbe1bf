"""
select_hard_examples: exact hand-sized cases, edge cases, and the plain-loop reference of
d2_sampling.references.hard_example_mining on random inputs.
"""

import itertools
import random
import unittest

import torch

from d2_sampling.modeling import select_hard_examples
from d2_sampling.references.hard_example_mining import select_hard_examples_reference


def _random_case(rng, gen):
    num_rois = rng.choice([0, 1, 2, 5, 17, 40, 120])
    # Few distinct loss values, so ties are common.
    losses = torch.randint(0, rng.choice([2, 5, 1000]), (num_rois,), generator=gen).float() / 7
    xy = torch.randint(0, 40, (num_rois, 2), generator=gen)
    wh = torch.randint(0, 25, (num_rois, 2), generator=gen)  # zero width/height happen
    boxes = torch.cat([xy, xy + wh], dim=1).float()
    fg_prob = rng.choice([0.0, 0.2, 0.7, 1.0])
    is_fg = torch.rand(num_rois, generator=gen) < fg_prob
    return losses, boxes, is_fg


class TestSelectHardExamplesExact(unittest.TestCase):
    def test_topk_order_and_ties(self):
        losses = torch.tensor([0.5, 2.0, 1.0, 2.0, 0.1])
        idx = select_hard_examples(losses, 3)
        self.assertEqual(idx.dtype, torch.int64)
        self.assertEqual(idx.tolist(), [1, 3, 2])  # the tie 1 vs 3: lower index first

    def test_fewer_candidates_than_num_samples(self):
        losses = torch.tensor([0.3, 0.9])
        self.assertEqual(select_hard_examples(losses, 10).tolist(), [1, 0])

    def test_empty_and_zero(self):
        self.assertEqual(select_hard_examples(torch.zeros(0), 5).tolist(), [])
        self.assertEqual(
            select_hard_examples(torch.zeros(0), 5, boxes=torch.zeros(0, 4)).tolist(), []
        )
        self.assertEqual(
            select_hard_examples(
                torch.zeros(0),
                5,
                is_foreground=torch.zeros(0, dtype=torch.bool),
                positive_fraction=0.25,
            ).tolist(),
            [],
        )
        self.assertEqual(select_hard_examples(torch.tensor([1.0, 2.0]), 0).tolist(), [])

    def test_nms_drops_overlap_with_harder_roi(self):
        boxes = torch.tensor(
            [
                [0.0, 0.0, 10.0, 10.0],  # loss 1.0
                [0.0, 0.0, 10.0, 9.0],  # IoU 0.9 with box 0, harder (2.0): suppresses box 0
                [0.0, 0.0, 10.0, 7.0],  # IoU 0.7 with 0, 0.78 with 1: suppressed by box 1
                [20.0, 20.0, 30.0, 30.0],  # disjoint
                [0.0, 0.0, 7.0, 9.0],  # IoU 63 / 90 = 0.7 with box 1: at the threshold, kept
            ]
        )
        losses = torch.tensor([1.0, 2.0, 0.5, 0.2, 0.1])
        self.assertEqual(select_hard_examples(losses, 5, boxes=boxes).tolist(), [1, 3, 4])
        # NMS off: nms_thresh outside (0, 1), or no boxes.
        for thresh in (0.0, -1.0, 1.0):
            self.assertEqual(
                select_hard_examples(losses, 5, boxes=boxes, nms_thresh=thresh).tolist(),
                [1, 0, 2, 3, 4],
            )
        self.assertEqual(select_hard_examples(losses, 5).tolist(), [1, 0, 2, 3, 4])

    def test_nms_tie_in_loss_keeps_lower_index(self):
        boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [0.0, 0, 10, 10]])
        losses = torch.tensor([1.0, 3.0, 3.0])
        self.assertEqual(select_hard_examples(losses, 3, boxes=boxes).tolist(), [1])

    def test_degenerate_boxes_never_suppress(self):
        boxes = torch.tensor([[5.0, 5, 5, 5], [5.0, 5, 5, 5], [5.0, 5, 5, 9]])
        losses = torch.tensor([1.0, 2.0, 3.0])
        self.assertEqual(select_hard_examples(losses, 3, boxes=boxes).tolist(), [2, 1, 0])

    def test_positive_quota(self):
        losses = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
        fg = torch.tensor([True, True, True, False, False, True])
        # int(4 * 0.5) = 2 hardest fg (0, 1), then 2 hardest bg (3, 4).
        idx = select_hard_examples(losses, 4, is_foreground=fg, positive_fraction=0.5)
        self.assertEqual(idx.tolist(), [0, 1, 3, 4])
        # int(5 * 0.25) = 1 fg; only 2 bg exist, so 3 in all.
        idx = select_hard_examples(losses, 5, is_foreground=fg, positive_fraction=0.25)
        self.assertEqual(idx.tolist(), [0, 3, 4])
        # Quota 0: background only. Quota 1: foreground only.
        idx = select_hard_examples(losses, 3, is_foreground=fg, positive_fraction=0.0)
        self.assertEqual(idx.tolist(), [3, 4])
        idx = select_hard_examples(losses, 3, is_foreground=fg, positive_fraction=1.0)
        self.assertEqual(idx.tolist(), [0, 1, 2])

    def test_quota_without_foreground_or_background(self):
        losses = torch.tensor([1.0, 3.0, 2.0])
        none = torch.zeros(3, dtype=torch.bool)
        idx = select_hard_examples(losses, 2, is_foreground=none, positive_fraction=0.25)
        self.assertEqual(idx.tolist(), [1, 2])  # no fg: bg fills everything
        idx = select_hard_examples(losses, 8, is_foreground=~none, positive_fraction=0.25)
        self.assertEqual(idx.tolist(), [1, 2])  # no bg: only the quota int(8 * .25) = 2

    def test_quota_counts_after_nms(self):
        boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [50.0, 50, 60, 60]])
        losses = torch.tensor([3.0, 2.0, 1.0])
        fg = torch.tensor([True, True, False])
        idx = select_hard_examples(losses, 4, boxes=boxes, is_foreground=fg, positive_fraction=0.5)
        self.assertEqual(idx.tolist(), [0, 2])  # RoI 1 removed by NMS before the quota

    def test_ignores_is_foreground_without_quota(self):
        losses = torch.tensor([1.0, 2.0])
        fg = torch.tensor([True, False])
        self.assertEqual(
            select_hard_examples(losses, 1, is_foreground=fg, positive_fraction=-1.0).tolist(),
            [1],
        )

    def test_bad_arguments(self):
        losses = torch.tensor([1.0, 2.0])
        with self.assertRaisesRegex(ValueError, "num_samples"):
            select_hard_examples(losses, -1)
        with self.assertRaisesRegex(ValueError, "positive_fraction"):
            select_hard_examples(
                losses, 1, is_foreground=torch.ones(2, dtype=torch.bool), positive_fraction=1.5
            )
        with self.assertRaisesRegex(ValueError, "is_foreground"):
            select_hard_examples(losses, 1, positive_fraction=0.25)
        with self.assertRaisesRegex(ValueError, "boxes"):
            select_hard_examples(losses, 1, boxes=torch.zeros(3, 4))
        with self.assertRaisesRegex(ValueError, "losses"):
            select_hard_examples(torch.zeros(2, 2), 1)


class TestSelectHardExamplesAgainstReference(unittest.TestCase):
    def test_random_inputs_all_modes(self):
        rng = random.Random(0)
        gen = torch.Generator().manual_seed(0)
        modes = list(itertools.product([False, True], [0.5, 0.7, 0.0], [-1.0, 0.0, 0.25, 0.5, 1.0]))
        cases = 0
        for _ in range(25):
            losses, boxes, is_fg = _random_case(rng, gen)
            for use_boxes, thresh, pos_frac in modes:
                num = rng.choice([0, 1, 3, 16, 64, 200])
                got = select_hard_examples(
                    losses,
                    num,
                    boxes=boxes if use_boxes else None,
                    nms_thresh=thresh,
                    is_foreground=is_fg,
                    positive_fraction=pos_frac,
                )
                want = select_hard_examples_reference(
                    losses.tolist(),
                    num,
                    boxes.tolist() if use_boxes else None,
                    thresh,
                    is_fg.tolist(),
                    pos_frac,
                )
                self.assertEqual(
                    got.tolist(),
                    want,
                    f"R={len(losses)} num={num} nms={use_boxes, thresh} quota={pos_frac}",
                )
                cases += 1
        self.assertEqual(cases, 25 * len(modes))

    def test_float64_and_half_losses(self):
        losses = torch.tensor([0.25, 3.0, 1.0, 3.0], dtype=torch.float64)
        self.assertEqual(select_hard_examples(losses, 3).tolist(), [1, 3, 2])
        self.assertEqual(select_hard_examples(losses.half(), 3).tolist(), [1, 3, 2])


if __name__ == "__main__":
    unittest.main()
