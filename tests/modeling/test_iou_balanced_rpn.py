"""
IoUBalancedRPN: exact sampled counts per label, per IoU bin and per GT on hand-made anchors;
that only the subsampling differs from Detectron2's RPN (same labels when nothing needs
sampling, same matched boxes, same boundary handling); images without annotations; logged
metrics; bins against uniform sampling over seeded draws; config keys and validation in both
config systems; a training step; and a short end-to-end training run with train_net.py.
"""

import inspect
import math
import unittest

import pytest
import torch
import yaml
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from d2_sampling import add_d2_sampling_config
from d2_sampling.modeling import IoUBalancedRPN

from helpers import CONFIGS, gt_instances, read_metrics, run_train_net

QUICK_YAML = CONFIGS / "quick_schedules/faster_rcnn_tiny_FPN_iou_balanced_rpn_instant_test.yaml"
QUICK_PY = CONFIGS / "quick_schedules/faster_rcnn_tiny_FPN_iou_balanced_rpn_instant_test.py"

# A 100 x 100 image with GT A = [0, 0, 10, 10] and GT B = [50, 50, 60, 60]. An anchor
# [0, 0, 10, y] has IoU y / 10 with A and 0 with B. RPN's matcher (IOU_THRESHOLDS [0.3, 0.7]):
# negatives (IoU < 0.3): 20 at 0.05, 4 at 0.15, 4 at 0.25, so h = 0.25 and the 3 bins are
# [0, .083], (.083, .167], (.167, .25]; ignored: 3 at 0.5; positives: 10 on A (IoU 0.9), 1 on B
# (IoU 0.8), each GT's best anchors already (so the low-quality matches add none).
SIZE = (100, 100)
GT_BOXES = [[0, 0, 10, 10], [50, 50, 60, 60]]
NEG_IOUS = [0.05] * 20 + [0.15] * 4 + [0.25] * 4
ANCHORS = (
    [[0, 0, 10, 10 * v] for v in NEG_IOUS]
    + [[0, 0, 10, 5]] * 3
    + [[0, 0, 10, 9]] * 10
    + [[50, 50, 60, 58]]
)
NUM_NEG, IGNORED, POS_A, POS_B = 28, range(28, 31), range(31, 41), 41
# Beyond the image's left edge: IoU 28 / 105.6 = 0.265 with A, a negative unless
# MODEL.RPN.BOUNDARY_THRESH >= 0 discards it.
OUTSIDE = [-2, 0, 10, 2.8]


def quick_cfg(**keys):
    cfg = get_cfg()
    add_d2_sampling_config(cfg)
    cfg.merge_from_file(str(QUICK_YAML))
    cfg.MODEL.DEVICE = "cpu"
    for k, v in keys.items():
        node = cfg
        *path, leaf = k.split(".")
        for p in path:
            node = node[p]
        node[leaf] = v
    return cfg


def build_rpn(**keys):
    """The proposal generator of the quick schedule, 16 anchors per image with 25% positives."""
    keys.setdefault("MODEL.RPN.BATCH_SIZE_PER_IMAGE", 16)
    keys.setdefault("MODEL.RPN.POSITIVE_FRACTION", 0.25)
    return build_model(quick_cfg(**keys)).proposal_generator


def anchors(extra=()):
    """ANCHORS (+ ``extra``) as two feature levels, as the anchor generator gives them."""
    t = torch.tensor(ANCHORS + list(extra), dtype=torch.float32)
    return [Boxes(t[:20]), Boxes(t[20:])]


def targets():
    """Image 0: GTs A and B; image 1: no annotation (every anchor a negative with IoU 0)."""
    return [gt_instances(GT_BOXES, [1, 3], size=SIZE), gt_instances([], [], size=SIZE)]


def per_iou_counts(labels, value):
    """How many of the 28 negatives at IoU 0.05 / 0.15 / 0.25 carry ``value``."""
    hit = labels[:NUM_NEG] == value
    return [int(hit[:20].sum()), int(hit[20:24].sum()), int(hit[24:28].sum())]


class TestLabelAndSample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rpn = build_rpn()

    def sample(self, rpn=None, extra=(), tgts=None):
        with EventStorage() as storage:
            labels, boxes = (rpn or self.rpn).label_and_sample_anchors(
                anchors(extra), tgts or targets()
            )
        return labels, boxes, {k: v[0] for k, v in storage.latest().items()}

    def test_exact_counts_per_label_bin_and_gt(self):
        self.assertIsInstance(self.rpn, IoUBalancedRPN)
        for seed in range(10):
            torch.manual_seed(seed)
            (l0, l1), _, m = self.sample()
            self.assertEqual(l0.dtype, torch.int8)  # the matcher's, as RPN's labels
            self.assertEqual(l0.shape, (len(ANCHORS),))
            # 16 anchors, int(16 * 0.25) = 4 positives: B's only anchor and 3 of A's 10.
            self.assertEqual(int((l0 == 1).sum()), 4)
            self.assertEqual(l0[POS_B].item(), 1)
            self.assertEqual(int((l0[POS_A.start : POS_A.stop] == 1).sum()), 3)
            # 12 negatives: 4 per IoU bin (uniform sampling would take ~8.6 from the first).
            self.assertEqual(per_iou_counts(l0, 0), [4, 4, 4])
            self.assertEqual(int((l0 == 0).sum()), 12)
            self.assertTrue((l0[IGNORED.start : IGNORED.stop] == -1).all())
            self.assertEqual(int((l0 == -1).sum()), len(ANCHORS) - 16)
            # The image without annotations: 16 negatives, no positive, the rest ignored.
            self.assertEqual(int((l1 == 0).sum()), 16)
            self.assertEqual(int((l1 == -1).sum()), len(ANCHORS) - 16)
        # Means over the two images; image 1 has every IoU 0, so all its negatives are in bin 0.
        self.assertEqual(m["rpn/iou_balanced_neg_bin0"], (4 + 16) / 2)
        self.assertEqual(m["rpn/iou_balanced_neg_bin1"], 4 / 2)
        self.assertEqual(m["rpn/iou_balanced_neg_bin2"], 4 / 2)
        self.assertNotIn("rpn/iou_balanced_neg_bin3", m)
        self.assertAlmostEqual(
            m["rpn/iou_balanced_neg_mean_iou"], 4 * (0.05 + 0.15 + 0.25) / 28, places=6
        )
        self.assertEqual(m["rpn/iou_balanced_num_gt_sampled"], 2 / 2)
        self.assertEqual(m["rpn/iou_balanced_num_gt"], 2 / 2)
        self.assertNotIn("rpn/iou_balanced_neg_floor", m)

    def test_only_the_subsampling_differs_from_rpn(self):
        """Detectron2's RPN with the same keys: same matching, boundary handling and boxes."""
        reference = {"MODEL.PROPOSAL_GENERATOR.NAME": "RPN"}
        # A batch larger than all anchors: nothing to subsample, so the labels are the same.
        big = {"MODEL.RPN.BATCH_SIZE_PER_IMAGE": 1000, "MODEL.RPN.POSITIVE_FRACTION": 0.5}
        for boundary in (-1, 0):
            keys = {"MODEL.RPN.BOUNDARY_THRESH": boundary}
            ours, ours_all = build_rpn(**keys), build_rpn(**keys, **big)
            ref_all = build_rpn(**keys, **big, **reference)
            self.assertIs(type(ref_all), RPN)
            torch.manual_seed(0)
            got, got_boxes, _ = self.sample(ours_all, extra=[OUTSIDE])
            want, want_boxes = ref_all.label_and_sample_anchors(anchors([OUTSIDE]), targets())
            for g, w in zip(got, want):
                self.assertEqual(g.dtype, w.dtype)
                self.assertTrue(torch.equal(g, w))
            self.assertEqual(got[0][len(ANCHORS)].item(), -1 if boundary == 0 else 0)
            self.assertEqual(got[0].tolist()[: len(ANCHORS)], [0] * 28 + [-1] * 3 + [1] * 11)
            # The matched boxes do not depend on the sample (and are zeros without GT).
            torch.manual_seed(1)
            small, small_boxes, _ = self.sample(ours, extra=[OUTSIDE])
            for b, w in zip(small_boxes + got_boxes, want_boxes + want_boxes):
                self.assertTrue(torch.equal(b, w))
            self.assertEqual(want_boxes[0][POS_B].tolist(), GT_BOXES[1])
            self.assertFalse(want_boxes[1].any())
            # Whatever RPN ignores, the sample ignores too.
            for s, w in zip(small, want):
                self.assertTrue((s[w == -1] == -1).all())

    def test_boundary_anchors_are_ignored_not_binned(self):
        rpn = build_rpn(**{"MODEL.RPN.BOUNDARY_THRESH": 0})
        sampled_without_boundary = 0
        for seed in range(10):
            torch.manual_seed(seed)
            (l0, _), _, m = self.sample(rpn, extra=[OUTSIDE])
            self.assertEqual(l0[len(ANCHORS)].item(), -1)
            self.assertEqual(per_iou_counts(l0, 0), [4, 4, 4])
            self.assertEqual(m["rpn/iou_balanced_neg_bin2"], 2)
            # Without the boundary, it is one of 5 candidates in the top bin (4 drawn).
            torch.manual_seed(seed)
            (l0, _), _, _ = self.sample(extra=[OUTSIDE])
            sampled_without_boundary += int(l0[len(ANCHORS)] == 0)
        self.assertGreater(sampled_without_boundary, 0)

    def test_uniform_positives_when_switched_off(self):
        rpn = build_rpn(**{"MODEL.RPN.IOU_BALANCED.INSTANCE_BALANCED_POSITIVES": False})
        b_sampled = set()
        for seed in range(30):
            torch.manual_seed(seed)
            (l0, _), _, _ = self.sample(rpn)
            self.assertEqual(int((l0 == 1).sum()), 4)
            b_sampled.add(l0[POS_B].item())
        self.assertIn(-1, b_sampled)  # P(B not among 4 of 11) = 0.64 per draw

    def test_floor_set_keys_reach_the_sampler(self):
        rpn = build_rpn(
            **{
                "MODEL.RPN.IOU_BALANCED.FLOOR_THR": 0.1,
                "MODEL.RPN.IOU_BALANCED.FLOOR_FRACTION": 0.5,
                "MODEL.RPN.IOU_BALANCED.NUM_BINS": 2,
            }
        )
        self.assertEqual((rpn.num_bins, rpn.floor_thr, rpn.floor_fraction), (2, 0.1, 0.5))
        torch.manual_seed(0)
        (l0,), _, m = self.sample(rpn, tgts=targets()[:1])
        # floor (IoU 0.05): int(12 * 0.5) = 6; bins over [0.1, 0.25] (edge 0.175): 3 and 3.
        self.assertEqual(per_iou_counts(l0, 0), [6, 3, 3])
        self.assertEqual(m["rpn/iou_balanced_neg_floor"], 6)
        self.assertEqual((m["rpn/iou_balanced_neg_bin0"], m["rpn/iou_balanced_neg_bin1"]), (3, 3))
        with self.assertRaises(AttributeError):
            rpn.num_bins = 4  # read-only: one copy, the sampler's

    def test_negatives_balanced_over_bins_unlike_uniform_over_seeded_draws(self):
        """
        Every draw takes 4 negatives from each bin, uniformly inside it (each of the 20 anchors
        of bin 0 with probability 4 / 20); Detectron2's RPN takes 12 * (20, 4, 4) / 28 =
        (8.57, 1.71, 1.71) on average. 400 seeded draws: the tolerances are 5 standard
        deviations of the frequencies / means.
        """
        ref = build_rpn(**{"MODEL.PROPOSAL_GENERATOR.NAME": "RPN"})
        draws = 400
        picked_bin0 = torch.zeros(20)
        ref_counts = torch.zeros(3)
        tgts = targets()[:1]
        for seed in range(draws):
            torch.manual_seed(seed)
            (l0,), _, _ = self.sample(tgts=tgts)
            self.assertEqual(per_iou_counts(l0, 0), [4, 4, 4])
            picked_bin0 += (l0[:20] == 0).float()
            torch.manual_seed(seed)
            (r0,), _ = ref.label_and_sample_anchors(anchors(), tgts)
            ref_counts += torch.tensor(per_iou_counts(r0, 0), dtype=torch.float32)
        freq = picked_bin0 / draws
        self.assertLess((freq - 0.2).abs().max().item(), 5 * math.sqrt(0.2 * 0.8 / draws))
        # Hypergeometric 12 of 28: sd of the bin-0 count sqrt(12 * 20/28 * 8/28 * 16/27) = 1.2.
        expected = torch.tensor([20.0, 4.0, 4.0]) * 12 / 28
        self.assertLess((ref_counts / draws - expected).abs().max().item(), 5 * 1.2 / draws**0.5)

    def test_training_step_runs_and_inference_is_standard(self):
        model = build_model(quick_cfg())
        image = torch.rand(3, 64, 64) * 255
        inst = Instances((64, 64))
        inst.gt_boxes = Boxes(torch.tensor([[5.0, 5.0, 40.0, 40.0]]))
        inst.gt_classes = torch.tensor([2])
        empty = Instances((64, 64))
        empty.gt_boxes = Boxes(torch.zeros(0, 4))
        empty.gt_classes = torch.zeros(0, dtype=torch.int64)
        torch.manual_seed(0)
        with EventStorage() as storage:
            losses = model(
                [{"image": image, "instances": inst}, {"image": image, "instances": empty}]
            )
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))
        self.assertIn("loss_rpn_cls", losses)
        sum(losses.values()).backward()
        m = {k: v[0] for k, v in storage.latest().items()}
        # Over a thousand anchors per image: the whole batch (128) is drawn, and the bins
        # together hold every sampled negative.
        rpn = model.proposal_generator
        self.assertEqual(
            sum(m[f"rpn/iou_balanced_neg_bin{k}"] for k in range(3)), m["rpn/num_neg_anchors"]
        )
        self.assertEqual(
            m["rpn/num_pos_anchors"] + m["rpn/num_neg_anchors"], rpn.batch_size_per_image
        )
        model.eval()
        with torch.no_grad():
            (out,) = model([{"image": image}])
        self.assertIn("instances", out)


class TestConfig(unittest.TestCase):
    def test_bad_values_name_the_key_at_build_time(self):
        cases = [
            ("MODEL.RPN.IOU_BALANCED.NUM_BINS", 0),
            ("MODEL.RPN.IOU_BALANCED.FLOOR_THR", 1.0),
            ("MODEL.RPN.IOU_BALANCED.FLOOR_FRACTION", 1.5),
            ("MODEL.RPN.IOU_BALANCED.FLOOR_FRACTION", -0.25),
            ("MODEL.RPN.POSITIVE_FRACTION", 1.25),
        ]
        for key, value in cases:
            arg = key.rsplit(".", 1)[1].lower()
            with self.assertRaisesRegex(
                ValueError, key.replace(".", r"\.") + rf" \({arg}\) .*" + str(value)
            ):
                build_model(quick_cfg(**{key: value}))
        # LazyConfig users see the key and the argument they set.
        cfg = LazyConfig.load(str(QUICK_PY))
        for arg, value, key in [("num_bins", 0, "NUM_BINS"), ("floor_thr", 2.0, "FLOOR_THR")]:
            cfg.model.proposal_generator[arg] = value
            with self.assertRaisesRegex(ValueError, rf"MODEL\.RPN\.IOU_BALANCED\.{key} \({arg}\)"):
                instantiate(cfg.model)
            cfg.model.proposal_generator[arg] = {"num_bins": 3, "floor_thr": -1.0}[arg]

    def test_same_defaults_everywhere(self):
        cfg = get_cfg()
        add_d2_sampling_config(cfg)
        yacs = {k.lower(): v for k, v in cfg.MODEL.RPN.IOU_BALANCED.items()}
        sig = inspect.signature(IoUBalancedRPN.__init__).parameters
        self.assertEqual({k: sig[k].default for k in yacs}, yacs)
        lazy = LazyConfig.load(str(QUICK_PY)).model.proposal_generator
        self.assertEqual({k: lazy[k] for k in yacs}, yacs)
        self.assertEqual(
            yacs,
            dict(num_bins=3, floor_thr=-1.0, floor_fraction=0.0, instance_balanced_positives=True),
        )

    def test_twin_configs_select_the_rpn_with_the_same_settings(self):
        torch.manual_seed(0)
        ymodel = build_model(quick_cfg())
        lmodel = instantiate(LazyConfig.load(str(QUICK_PY)).model)
        for model in (ymodel, lmodel):
            self.assertIs(type(model.proposal_generator), IoUBalancedRPN)
            # Only the RPN's sampler changes: the ROI head samples uniformly.
            self.assertIs(type(model.roi_heads), StandardROIHeads)
        yrpn, lrpn = ymodel.proposal_generator, lmodel.proposal_generator
        for attr in (
            "num_bins",
            "floor_thr",
            "floor_fraction",
            "instance_balanced_positives",
            "batch_size_per_image",
            "positive_fraction",
            "anchor_boundary_thresh",
        ):
            self.assertEqual(getattr(yrpn, attr), getattr(lrpn, attr), attr)
        self.assertEqual(yrpn.batch_size_per_image, 128)
        self.assertEqual(
            (yrpn.anchor_matcher.thresholds, yrpn.anchor_matcher.labels),
            (lrpn.anchor_matcher.thresholds, lrpn.anchor_matcher.labels),
        )


def _last(metrics, key):
    values = [m[key] for m in metrics if key in m]
    assert values, f"{key} not logged"
    return values[-1]


@pytest.mark.slow
def test_e2e_yacs_with_override(tmp_path):
    """2 seeded iterations of the quick schedule with 4 bins, then its evaluation."""
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        QUICK_YAML,
        "MODEL.RPN.IOU_BALANCED.NUM_BINS",
        4,
        "SOLVER.MAX_ITER",
        2,
        "SEED",
        0,
        "OUTPUT_DIR",
        out,
    )
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["MODEL"]["PROPOSAL_GENERATOR"]["NAME"] == "IoUBalancedRPN"
    assert cfg["MODEL"]["RPN"]["IOU_BALANCED"]["NUM_BINS"] == 4
    metrics = read_metrics(out)
    losses = [m["total_loss"] for m in metrics if "total_loss" in m]
    assert losses and all(math.isfinite(v) for v in losses)
    # The override took effect: 4 bins, which together hold every sampled negative anchor
    # (values are medians over the 2 iterations, i.e. means, so the sums still match).
    bins = [_last(metrics, f"rpn/iou_balanced_neg_bin{k}") for k in range(4)]
    assert not any("rpn/iou_balanced_neg_bin4" in m for m in metrics)
    assert sum(bins) == pytest.approx(_last(metrics, "rpn/num_neg_anchors"), abs=1e-6)
    # Thousands of anchors per image: the whole 128-anchor batch is drawn.
    assert _last(metrics, "rpn/num_pos_anchors") + _last(metrics, "rpn/num_neg_anchors") == (
        pytest.approx(128)
    )
    # Negative anchors are below the matcher's 0.3 threshold.
    assert 0 <= _last(metrics, "rpn/iou_balanced_neg_mean_iou") < 0.3
    assert _last(metrics, "rpn/iou_balanced_num_gt_sampled") > 0
    assert any("bbox/AP" in m for m in metrics)
