"""
IoUBalancedROIHeads: exact sampled counts per IoU bin and per GT on hand-made proposals, images
without annotations, logged metrics, config keys and validation in both config systems, and
end-to-end training (yacs, LazyConfig, two CPU processes).
"""

import inspect
import json
import unittest

import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from d2_sampling import add_d2_sampling_config
from d2_sampling.modeling import IoUBalancedROIHeads
from d2_sampling.modeling.roi_heads import label_proposals, select_training_rois

from helpers import (
    BCCD,
    CONFIGS,
    assert_workers_agree,
    bccd_available,
    coco_tiny_available,
    read_metrics,
    run_script,
    run_train_net,
    write_empty_images_dataset,
)

QUICK_YAML = CONFIGS / "quick_schedules/faster_rcnn_tiny_FPN_iou_balanced_instant_test.yaml"
QUICK_PY = CONFIGS / "quick_schedules/faster_rcnn_tiny_FPN_iou_balanced_instant_test.py"

# Image 0: GT A = [0, 0, 10, 10] (class 1), GT B = [50, 50, 60, 60] (class 3). A proposal
# [0, 0, 10, y] has IoU y / 10 with A. Negatives (IoU < 0.5): 20 at 0.05, 4 at 0.2, 4 at 0.4,
# so h = 0.4 and the 3 bins are [0, .133), [.133, .267), [.267, .4]. Positives: 10 on A (IoU
# 0.9), 1 on B; with the appended GT boxes, A has 11 candidates and B 2.
GT_BOXES = [[0, 0, 10, 10], [50, 50, 60, 60]]
NEG = [[0, 0, 10, 0.5]] * 20 + [[0, 0, 10, 2]] * 4 + [[0, 0, 10, 4]] * 4
POS = [[0, 0, 10, 9]] * 10 + [[50, 50, 60, 59]]


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


def instances(boxes, **fields):
    inst = Instances((100, 100))
    for k, v in fields.items():
        inst.set(k, v)
    inst.set(
        "proposal_boxes" if "gt_classes" not in fields else "gt_boxes",
        Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
    )
    return inst


def batch():
    """Image 0 as above; image 1 has no annotation and 30 proposals."""
    props0 = instances(NEG + POS, objectness_logits=torch.zeros(len(NEG + POS)))
    tgt0 = instances(GT_BOXES, gt_classes=torch.tensor([1, 3]))
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(30, 2, generator=g) * 60
    boxes1 = torch.cat([xy, xy + 20], dim=1).tolist()
    props1 = instances(boxes1, objectness_logits=torch.zeros(30))
    tgt1 = instances([], gt_classes=torch.zeros(0, dtype=torch.int64))
    return [props0, props1], [tgt0, tgt1]


class TestLabelAndSample(unittest.TestCase):
    def heads(self, **keys):
        keys.setdefault("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16)
        return build_model(quick_cfg(**keys)).roi_heads

    def test_exact_counts_per_bin_and_per_gt(self):
        heads = self.heads()
        self.assertIsInstance(heads, IoUBalancedROIHeads)
        bg = heads.num_classes
        for seed in range(10):
            torch.manual_seed(seed)
            with EventStorage() as storage:
                out = heads.label_and_sample_proposals(*batch())
            s0, s1 = out
            # 16 ROIs, int(16 * 0.25) = 4 positives: 2 per GT (B has only 2 candidates).
            self.assertEqual(len(s0), 16)
            fg = s0.gt_classes != bg
            self.assertEqual(sorted(s0.gt_classes[fg].tolist()), [1, 1, 3, 3])
            # 12 negatives: 4 per IoU bin (uniform sampling would take ~8.6 from the first).
            heights = s0.proposal_boxes.tensor[~fg, 3]
            self.assertEqual(
                torch.bincount((heights * 10).round().long(), minlength=41)[[5, 20, 40]].tolist(),
                [4, 4, 4],
            )
            # The image without annotations: 16 background ROIs, no gt_boxes field.
            self.assertEqual(len(s1), 16)
            self.assertTrue((s1.gt_classes == bg).all())
            self.assertFalse(s1.has("gt_boxes"))
            m = {k: v[0] for k, v in storage.latest().items()}
        # Means over the two images; image 1 has every IoU 0, so all its negatives are in bin 0.
        self.assertEqual(m["roi_head/iou_balanced_neg_bin0"], (4 + 16) / 2)
        self.assertEqual(m["roi_head/iou_balanced_neg_bin1"], 4 / 2)
        self.assertEqual(m["roi_head/iou_balanced_neg_bin2"], 4 / 2)
        self.assertAlmostEqual(
            m["roi_head/iou_balanced_neg_mean_iou"], 4 * (0.05 + 0.2 + 0.4) / 28, places=5
        )
        self.assertEqual(m["roi_head/iou_balanced_num_gt_sampled"], 2 / 2)
        self.assertEqual(m["roi_head/iou_balanced_num_gt"], 2 / 2)
        self.assertEqual(m["roi_head/num_fg_samples"], 4 / 2)
        self.assertEqual(m["roi_head/num_bg_samples"], 28 / 2)
        self.assertNotIn("roi_head/iou_balanced_neg_floor", m)

    def test_uniform_positives_when_switched_off(self):
        heads = self.heads(**{"MODEL.IOU_BALANCED.INSTANCE_BALANCED_POSITIVES": False})
        b_counts = set()
        for seed in range(30):
            torch.manual_seed(seed)
            with EventStorage():
                s0 = heads.label_and_sample_proposals(*batch())[0]
            b_counts.add(int((s0.gt_classes == 3).sum()))
        self.assertIn(0, b_counts)  # P(B gets none of 4 from 13) = 0.46 per draw

    def test_floor_set_metric_and_keys_reach_the_sampler(self):
        heads = self.heads(
            **{
                "MODEL.IOU_BALANCED.FLOOR_THR": 0.1,
                "MODEL.IOU_BALANCED.FLOOR_FRACTION": 0.5,
                "MODEL.IOU_BALANCED.NUM_BINS": 2,
            }
        )
        self.assertEqual((heads.num_bins, heads.floor_thr, heads.floor_fraction), (2, 0.1, 0.5))
        torch.manual_seed(0)
        props, tgts = batch()
        with EventStorage() as storage:
            s0 = heads.label_and_sample_proposals(props[:1], tgts[:1])[0]
        heights = s0.proposal_boxes.tensor[s0.gt_classes == heads.num_classes, 3]
        # floor (IoU 0.05): int(12 * 0.5) = 6; bins over [0.1, 0.4] (edge 0.25): 3 and 3.
        self.assertEqual(
            torch.bincount((heights * 10).round().long(), minlength=41)[[5, 20, 40]].tolist(),
            [6, 3, 3],
        )
        m = {k: v[0] for k, v in storage.latest().items()}
        self.assertEqual(m["roi_head/iou_balanced_neg_floor"], 6)
        self.assertEqual(
            (m["roi_head/iou_balanced_neg_bin0"], m["roi_head/iou_balanced_neg_bin1"]), (3, 3)
        )

    def test_step_neither_rechecks_nor_recomputes_bins(self):
        """The keys are checked once, at build time; the logged bins are the sampler's own."""
        from unittest import mock

        import d2_sampling.modeling.iou_balanced_sampling as sampling

        heads = self.heads()
        calls = []
        real_bin_index = sampling.iou_bin_index

        def counting_bin_index(*args, **kwargs):
            calls.append(1)
            return real_bin_index(*args, **kwargs)

        with (
            mock.patch.object(
                sampling, "check_iou_balanced_args", side_effect=AssertionError("re-checked")
            ),
            mock.patch.object(sampling, "iou_bin_index", counting_bin_index),
        ):
            torch.manual_seed(0)
            with EventStorage() as storage:
                heads.label_and_sample_proposals(*batch())
        self.assertEqual(len(calls), 2)  # once per image, inside the sampler
        self.assertIn("roi_head/iou_balanced_neg_bin2", storage.latest())
        # The head's settings are the sampler's, read-only.
        self.assertEqual(heads.num_bins, heads.sampler.num_bins)
        with self.assertRaises(AttributeError):
            heads.num_bins = 4

    def test_training_step_runs_and_inference_is_standard(self):
        model = build_model(quick_cfg())
        image = torch.rand(3, 64, 64) * 255
        inst = Instances((64, 64))
        inst.gt_boxes = Boxes(torch.tensor([[5.0, 5.0, 40.0, 40.0]]))
        inst.gt_classes = torch.tensor([2])
        empty = Instances((64, 64))
        empty.gt_boxes = Boxes(torch.zeros(0, 4))
        empty.gt_classes = torch.zeros(0, dtype=torch.int64)
        with EventStorage():
            losses = model(
                [{"image": image, "instances": inst}, {"image": image, "instances": empty}]
            )
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))
        sum(losses.values()).backward()
        model.eval()
        with torch.no_grad():
            (out,) = model([{"image": image}])
        self.assertIn("instances", out)


class TestLabeling(unittest.TestCase):
    """The labelling both ROI heads share: Detectron2's, with the IoU kept."""

    def test_labels_matches_and_ious(self):
        # GT 0 = [0, 0, 10, 10] (class 1), GT 1 = [50, 50, 60, 60] (class 3); [0, 0, 10, y] has
        # IoU y / 10 with GT 0. Matcher: < 0.3 background, [0.3, 0.5) ignored, >= 0.5 fg.
        targets = instances(GT_BOXES, gt_classes=torch.tensor([1, 3]))
        targets.gt_extra = torch.tensor([10, 30])  # any gt_* field travels with its GT
        boxes = [[0, 0, 10, 1], [0, 0, 10, 4], [0, 0, 10, 6], [50, 50, 60, 59], [80, 80, 90, 90]]
        proposals = instances(boxes, objectness_logits=torch.zeros(5))
        matcher = Matcher([0.3, 0.5], [0, -1, 1], allow_low_quality_matches=False)
        labels = label_proposals(proposals, targets, matcher, num_classes=5)
        self.assertEqual(labels.gt_classes.tolist(), [5, -1, 1, 3, 5])
        self.assertEqual(labels.matched_idxs.tolist(), [0, 0, 0, 1, 0])
        self.assertTrue(torch.allclose(labels.ious, torch.tensor([0.1, 0.4, 0.6, 0.9, 0.0])))
        rois = select_training_rois(proposals, labels, torch.tensor([3, 2, 0]), targets)
        self.assertEqual(rois.gt_classes.tolist(), [3, 1, 5])
        self.assertEqual(rois.gt_extra.tolist(), [30, 10, 10])
        self.assertEqual(rois.gt_boxes.tensor[0].tolist(), GT_BOXES[1])
        only = select_training_rois(
            proposals, labels, torch.tensor([3]), targets, gt_fields=("gt_boxes",)
        )
        self.assertTrue(only.has("gt_boxes") and not only.has("gt_extra"))

    def test_image_without_gt(self):
        targets = instances([], gt_classes=torch.zeros(0, dtype=torch.int64))
        proposals = instances([[0, 0, 10, 10], [5, 5, 20, 20]])
        labels = label_proposals(proposals, targets, Matcher([0.5], [0, 1]), num_classes=5)
        self.assertEqual(labels.gt_classes.tolist(), [5, 5])
        self.assertEqual(labels.ious.tolist(), [0.0, 0.0])
        rois = select_training_rois(proposals, labels, torch.tensor([1]), targets)
        self.assertEqual(rois.gt_classes.tolist(), [5])
        self.assertFalse(rois.has("gt_boxes"))  # as Detectron2: no dummy ground truth


class TestConfig(unittest.TestCase):
    def test_bad_values_name_the_key(self):
        cases = [
            ("MODEL.IOU_BALANCED.NUM_BINS", 0),
            ("MODEL.IOU_BALANCED.FLOOR_THR", 1.0),
            ("MODEL.IOU_BALANCED.FLOOR_FRACTION", 1.5),
            ("MODEL.IOU_BALANCED.FLOOR_FRACTION", -0.25),
            ("MODEL.ROI_HEADS.POSITIVE_FRACTION", 1.25),
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
            cfg.model.roi_heads[arg] = value
            with self.assertRaisesRegex(ValueError, rf"MODEL\.IOU_BALANCED\.{key} \({arg}\)"):
                instantiate(cfg.model)
            cfg.model.roi_heads[arg] = {"num_bins": 3, "floor_thr": -1.0}[arg]

    def test_same_defaults_everywhere(self):
        cfg = get_cfg()
        add_d2_sampling_config(cfg)
        yacs = {k.lower(): v for k, v in cfg.MODEL.IOU_BALANCED.items()}
        sig = inspect.signature(IoUBalancedROIHeads.__init__).parameters
        self.assertEqual({k: sig[k].default for k in yacs}, yacs)
        lazy = LazyConfig.load(str(QUICK_PY)).model.roi_heads
        self.assertEqual({k: lazy[k] for k in yacs}, yacs)
        self.assertEqual(
            yacs,
            dict(num_bins=3, floor_thr=-1.0, floor_fraction=0.0, instance_balanced_positives=True),
        )

    def test_configs_select_the_head(self):
        for name in [
            "COCO-Detection/faster_rcnn_R_50_FPN_iou_balanced_1x",
            "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_iou_balanced_1x",
            "Synthetic/faster_rcnn_tiny_FPN_iou_balanced",
        ]:
            cfg = get_cfg()
            add_d2_sampling_config(cfg)
            cfg.merge_from_file(str(CONFIGS / f"{name}.yaml"))
            self.assertEqual(cfg.MODEL.ROI_HEADS.NAME, "IoUBalancedROIHeads", name)
            lazy = LazyConfig.load(str(CONFIGS / f"{name}.py"))
            self.assertIs(lazy.model.roi_heads._target_, IoUBalancedROIHeads, name)
            self.assertEqual(
                lazy.model.roi_heads.batch_size_per_image,
                cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
                name,
            )
            self.assertEqual(lazy.model.roi_heads.num_bins, cfg.MODEL.IOU_BALANCED.NUM_BINS)
            self.assertEqual(bool(lazy.model.roi_heads.get("mask_head")), cfg.MODEL.MASK_ON, name)


def _last(metrics, key):
    values = [m[key] for m in metrics if key in m]
    assert values, f"{key} not logged"
    return values[-1]


@pytest.mark.slow
def test_e2e_yacs_images_without_annotations_and_override(tmp_path):
    """Only the empty images of synthetic_mini_train: every ROI background, all in bin 0."""
    empty_json, image_root = write_empty_images_dataset(tmp_path)
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        QUICK_YAML,
        "--coco-dataset",
        "iou_balanced_test_empty",
        empty_json,
        image_root,
        "DATASETS.TRAIN",
        '("iou_balanced_test_empty",)',
        "DATALOADER.FILTER_EMPTY_ANNOTATIONS",
        "False",
        "MODEL.IOU_BALANCED.NUM_BINS",
        4,
        "SOLVER.MAX_ITER",
        2,
        "SEED",
        0,
        "OUTPUT_DIR",
        out,
    )
    metrics = read_metrics(out)
    # Every IoU is 0 without annotations: all 128 negatives in bin 0, whatever the weights.
    assert _last(metrics, "roi_head/iou_balanced_neg_bin0") == 128
    for k in (1, 2, 3):  # the override took effect: 4 bins
        assert _last(metrics, f"roi_head/iou_balanced_neg_bin{k}") == 0
    assert not any("roi_head/iou_balanced_neg_bin4" in m for m in metrics)
    assert _last(metrics, "roi_head/iou_balanced_num_gt") == 0
    assert _last(metrics, "roi_head/num_fg_samples") == 0
    assert _last(metrics, "loss_box_reg") == 0


@pytest.mark.slow
def test_e2e_lazy_with_override_and_unfiltered_images(tmp_path):
    """8 iterations of 2 images: one epoch of synthetic_mini_train, its 2 empty images too."""
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        QUICK_PY,
        "model.roi_heads.num_bins=5",
        "+dataloader.train.dataset.filter_empty=False",
        "train.max_iter=8",
        "train.seed=0",
        f"train.output_dir={out}",
    )
    metrics = read_metrics(out)
    # The override took effect: 5 bins, each logged with a count of the 128-ROI batch. How the
    # negatives spread over them depends on the proposals, i.e. on the weights: the share of
    # the upper bins is checked over seeded draws in test_iou_balanced_sampling.py instead.
    bins = [_last(metrics, f"roi_head/iou_balanced_neg_bin{k}") for k in range(5)]
    assert not any("roi_head/iou_balanced_neg_bin5" in m for m in metrics)
    assert all(0 <= b <= 128 for b in bins)
    # Negatives are below the matcher's 0.5 foreground threshold.
    assert 0 <= _last(metrics, "roi_head/iou_balanced_neg_mean_iou") < 0.5
    # GT boxes are appended as proposals and the positives are instance-balanced, so every
    # annotated image samples each of its GTs: only the 2 empty images can give 0.
    assert _last(metrics, "roi_head/iou_balanced_num_gt_sampled") > 0
    assert any("bbox/AP" in m for m in metrics)


@pytest.mark.slow
def test_e2e_yacs_two_process(tmp_path):
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        QUICK_YAML,
        "--num-gpus",
        2,
        "--check-weight-sync",
        "SEED",
        0,
        "OUTPUT_DIR",
        out,
    )
    assert_workers_agree(out)
    metrics = read_metrics(out)
    assert (
        _last(metrics, "roi_head/num_fg_samples") + _last(metrics, "roi_head/num_bg_samples") == 128
    )
    assert any("bbox/AP" in m for m in metrics)


@pytest.mark.slow
def test_benchmark_quick(tmp_path):
    """benchmarks/bench_iou_balanced.py --quick: one tiny iteration of everything."""
    out = tmp_path / "bench.json"
    run_script("benchmarks/bench_iou_balanced.py", "--quick", "--json", out, timeout=300)
    result = json.loads(out.read_text())
    samplers = {r["sampler"] for r in result["sampling"]}
    assert any("MMDetection" in s for s in samplers) and any("Detectron2" in s for s in samplers)
    assert len(result["iterations"]) == 4 and all(r["median_s"] > 0 for r in result["iterations"])


@pytest.mark.slow
@pytest.mark.skipif(not coco_tiny_available(), reason="coco_tiny not found")
def test_plot_tool_on_coco_tiny(tmp_path):
    """tools/plot_sampled_iou.py end to end on 2 real images, after 1 training iteration."""
    out, js = tmp_path / "fig.png", tmp_path / "fig.json"
    run_script(
        "tools/plot_sampled_iou.py",
        "--train-iters", "1", "--max-images", "2", "--seed", "0",
        "--output-dir", tmp_path / "train", "--out", out, "--json", js,
        timeout=300,
    )  # fmt: skip
    assert out.stat().st_size > 0
    # The one training path: the project's Trainer wrote its metrics there.
    assert (tmp_path / "train" / "metrics.json").is_file()
    result = json.loads(js.read_text())
    counts = result["counts"]
    # the three pickers take the same number of negatives, fewer than the pool holds
    assert counts["random"] == counts["hard (by loss)"] == counts["IoU-balanced"] > 0
    assert counts["pool"] > counts["random"]
    for name, hist in result["histograms"].items():
        assert sum(hist) == counts[name], name  # every negative's IoU is in [0, 0.5)
        assert 0 <= result["mean_iou"][name] < 0.5, name
    # (That IoU-balanced picks move towards higher IoU than random ones is a statistical
    # property, checked over seeded draws in test_iou_balanced_sampling.py.)


def test_plot_tool_dataset_takes_a_name_or_a_coco_triple():
    """--dataset NAME [JSON IMAGE_ROOT]: two words are neither, an error before any work."""
    proc = run_script(
        "tools/plot_sampled_iou.py", "--dataset", "a", "b", "--weights", "w.pth", check=False
    )
    assert proc.returncode == 2
    assert "--dataset takes NAME (a registered dataset) or NAME JSON IMAGE_ROOT" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not bccd_available(), reason="BCCD not found beside the checkout")
def test_plot_tool_on_voc_dataset_with_weights(tmp_path):
    """
    tools/plot_sampled_iou.py on BCCD (--voc-dataset) with the BCCD config's ROI settings:
    1 training iteration, then --weights of that model (which trains nothing).
    """
    weights = tmp_path / "w.pth"
    common = [
        "--config-file", CONFIGS / "BCCD/faster_rcnn_effnetlite0_FPN.yaml",
        "--voc-dataset", "plot_bccd_val", BCCD, "val", "--dataset", "plot_bccd_val",
        "--roi-settings", "config", "--max-images", "2", "--seed", "0",
    ]  # fmt: skip
    run_script(
        "tools/plot_sampled_iou.py", *common,
        "--voc-dataset", "plot_bccd_train", BCCD, "train", "--train-dataset", "plot_bccd_train",
        "--train-iters", "1", "--save-weights", weights, "--output-dir", tmp_path / "train",
        "--out", tmp_path / "a.png", "--json", tmp_path / "a.json",
        timeout=300,
    )  # fmt: skip
    assert (tmp_path / "train" / "metrics.json").is_file()
    run_script(
        "tools/plot_sampled_iou.py", *common, "--weights", weights,
        "--output-dir", tmp_path / "eval",
        "--out", tmp_path / "b.png", "--json", tmp_path / "b.json",
        timeout=300,
    )  # fmt: skip
    assert not (tmp_path / "eval").exists()  # nothing trained
    trained, loaded = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "ab")
    assert loaded["weights"] == str(weights)
    # The config's settings: 128 ROIs, 25% positives, RPN top-k 1000 / 500, 320 px, K = 3.
    assert (loaded["batch_size_per_image"], loaded["positive_fraction"]) == (128, 0.25)
    assert (loaded["rpn_topk"], loaded["size"], loaded["num_bins"]) == ([1000, 500], 320, 3)
    counts = loaded["counts"]
    assert counts["random"] == counts["hard (by loss)"] == counts["IoU-balanced"] > 0
    assert counts["random"] <= 2 * 128 and counts["pool"] <= 2 * (500 + 30)
    # The same weights give the same pool and the same hard negatives (random picks differ:
    # the training consumed random numbers).
    for key in ("pool", "hard (by loss)"):
        assert loaded["histograms"][key] == trained["histograms"][key], key
