"""The ATSS and RetinaNetATSS meta-architectures: labels, losses, normaliser, configs, e2e."""

import json
import math
import os
import socket
import time
import unittest
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.modeling import build_model
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

import d2_sampling  # noqa: F401
from d2_sampling.data import generate_synthetic_dataset, synthetic_paths
from d2_sampling.engine.setup import load_lazy_config, load_yacs_config
from d2_sampling.modeling import ATSS, ATSSMatcher, RetinaNetATSS, anchor_grid
from d2_sampling.modeling.meta_arch import atss_losses
from d2_sampling.modeling.meta_arch.atss_losses import atss_loss_normalizers, centerness_targets

from helpers import CONFIGS, assert_workers_agree, gt_instances, read_metrics, run_train_net

ATSS_QUICK = CONFIGS / "quick_schedules" / "atss_tiny_FPN_instant_test"
RETINANET_ATSS_QUICK = CONFIGS / "quick_schedules" / "retinanet_tiny_FPN_atss_instant_test"


def yacs_model(name=ATSS_QUICK, opts=()):
    cfg = load_yacs_config(str(name) + ".yaml", ["MODEL.DEVICE", "cpu", *opts])
    torch.manual_seed(0)
    return build_model(cfg), cfg


instances = gt_instances


def image_batch(gts, size=(64, 96)):
    torch.manual_seed(1)
    return [{"image": torch.rand(3, *size) * 255, "instances": g} for g in gts]


class TestLabelAnchors(unittest.TestCase):
    def test_classes_background_and_empty_image(self):
        model, _ = yacs_model(opts=["MODEL.ATSS.TOPK", "2"])
        # The hand-sized scene of test_atss_matcher (GT0 gets a0, a1; GT1 gets a2, a4).
        anchors = [
            Boxes(
                torch.tensor(
                    [[0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10]],
                    dtype=torch.float32,
                )
            ),
            Boxes(torch.tensor([[0, 0, 40, 10]], dtype=torch.float32)),
        ]
        k = model.num_classes
        with EventStorage() as storage:
            labels, boxes = model.label_anchors(
                anchors, [instances([[0, 0, 20, 10], [10, 0, 30, 10]], [3, 1]), instances([], [])]
            )
            scalars = {k: v[0] for k, v in storage.latest().items()}
        self.assertEqual(labels[0].tolist(), [3, 3, 1, k, 1])
        self.assertEqual(labels[1].tolist(), [k] * 5)
        self.assertEqual(boxes[0][2].tolist(), [10, 0, 30, 10])
        self.assertEqual(tuple(boxes[1].shape), (5, 4))
        self.assertEqual(scalars["atss/num_pos_per_gt"], 2.0)
        self.assertEqual(scalars["atss/gt_without_pos"], 0.0)
        self.assertEqual(scalars["atss/num_candidates"], 3)

    def test_retinanet_atss_takes_k_candidates_per_anchor_of_a_location(self):
        # The matcher learns the 9 anchors per location from the anchor generator: k x 9
        # candidates per level (all of a level's anchors where it has fewer).
        for name, topk in [(ATSS_QUICK, 7), (RETINANET_ATSS_QUICK, 2)]:
            model, _ = yacs_model(name, ["MODEL.ATSS.TOPK", str(topk)])
            self.assertIsInstance(model, ATSS if name == ATSS_QUICK else RetinaNetATSS)
            self.assertIsInstance(model.anchor_matcher, ATSSMatcher)
            per_location = model.anchor_generator.num_cell_anchors
            self.assertEqual(per_location, [9] * 5 if name == RETINANET_ATSS_QUICK else [1] * 5)
            features = model.backbone(torch.zeros(1, 3, 64, 96))
            anchors = model.anchor_generator([features[f] for f in model.head_in_features])
            with EventStorage() as storage:
                model.label_anchors(anchors, [instances([[10, 10, 50, 40]], [1])])
                logged = storage.latest()["atss/num_candidates"][0]
            expected = sum(min(topk * a, len(lv)) for a, lv in zip(per_location, anchors))
            self.assertEqual(logged, expected)
        self.assertNotEqual(expected, sum(min(topk, len(lv)) for lv in anchors))  # A = 1

    def test_label_anchors_batch_is_the_matcher_image_by_image(self):
        model, _ = yacs_model(RETINANET_ATSS_QUICK)
        features = model.backbone(torch.zeros(1, 3, 64, 96))
        anchors = model.anchor_generator([features[f] for f in model.head_in_features])
        gts = [
            instances([[10, 10, 50, 40], [40, 5, 90, 60], [40, 5, 90, 60]], [0, 2, 1]),
            instances([], []),
            instances([[0, 0, 96, 64], [3, 3, 5, 5]], [1, 1]),
        ]
        with EventStorage() as storage:
            labels, boxes = model.label_anchors(anchors, gts)
            scalars = {k: v[0] for k, v in storage.latest().items()}
        num_pos = num_without = 0
        thresholds = []
        for inst, lab, box in zip(gts, labels, boxes):
            cands = model.anchor_matcher.select_candidates(inst.gt_boxes, anchors, 9)
            matches, match_labels = model.anchor_matcher.assign(cands)
            fg = match_labels.bool()
            self.assertEqual(lab.dtype, torch.int64)
            if len(inst):
                expected = inst.gt_classes[matches].clone()
                expected[~fg] = model.num_classes
                self.assertTrue(torch.equal(lab, expected))
                self.assertTrue(torch.equal(box[fg], inst.gt_boxes.tensor[matches[fg]]))
                num_without += int((torch.bincount(matches[fg], minlength=len(inst)) == 0).sum())
                thresholds += cands.thresholds.tolist()
            else:
                self.assertTrue((lab == model.num_classes).all())
            num_pos += int(fg.sum())
        self.assertEqual(scalars["atss/num_pos_per_gt"], num_pos / 5)
        self.assertEqual(scalars["atss/gt_without_pos"], num_without / 5)
        self.assertAlmostEqual(scalars["atss/iou_threshold"], sum(thresholds) / 5, places=12)
        self.assertGreater(num_pos, 0)

    @unittest.skipUnless(torch.cuda.is_available(), "needs CUDA")
    def test_cuda_label_anchors_one_host_sync_per_batch(self):
        """General path: one sync per batch (the logged stats); grid path: one more per image
        with a GT (whether a window needs the fallback)."""
        model, _ = yacs_model(RETINANET_ATSS_QUICK)
        model.to("cuda")
        features = model.backbone(torch.zeros(1, 3, 64, 96, device="cuda"))
        feats = [features[f] for f in model.head_in_features]
        anchors = model.anchor_generator(feats)
        grid = anchor_grid(model.anchor_generator, feats)
        gts = [
            instances([[10, 10, 50, 40], [40, 5, 90, 60]], [0, 2]).to("cuda"),
            instances([], []).to("cuda"),
            instances([[0, 0, 96, 64]], [1]).to("cuda"),
        ]
        cpu_model, _ = yacs_model(RETINANET_ATSS_QUICK)
        cpu_anchors = [Boxes(a.tensor.cpu()) for a in anchors]
        with EventStorage():
            expected, _ = cpu_model.label_anchors(cpu_anchors, [g.to("cpu") for g in gts])
        for path_grid, expected_syncs in [(None, 1), (grid, 3)]:
            torch.cuda.synchronize()
            with EventStorage(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    labels, _ = model.label_anchors(anchors, gts, path_grid)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            syncs = [w for w in caught if "synchroniz" in str(w.message)]
            self.assertEqual(len(syncs), expected_syncs, [str(w.message) for w in syncs])
            for x, y in zip(labels, expected):
                self.assertTrue(torch.equal(x.cpu(), y))


class TestLosses(unittest.TestCase):
    def test_centerness_targets_exact(self):
        anchors = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
        gt = torch.tensor([[0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 4.0, 4.0]])
        # centers (1, 1) in a 4x2 box: sqrt(1/3 * 1); (2, 2) in a 4x4 box: 1.
        self.assertTrue(
            torch.allclose(centerness_targets(anchors, gt), torch.tensor([math.sqrt(1 / 3), 1.0]))
        )

    def test_no_positive_anywhere_is_finite_and_still_in_the_graph(self):
        model, _ = yacs_model()
        model.train()
        with EventStorage():
            losses = model(image_batch([instances([], []), instances([], [])]))
        self.assertEqual(set(losses), {"loss_cls", "loss_box_reg", "loss_centerness"})
        for v in losses.values():
            self.assertTrue(torch.isfinite(v))
        self.assertEqual(losses["loss_box_reg"].item(), 0.0)
        self.assertEqual(losses["loss_centerness"].item(), 0.0)
        self.assertIsNotNone(losses["loss_box_reg"].grad_fn)
        self.assertIsNotNone(losses["loss_centerness"].grad_fn)
        sum(losses.values()).backward()
        # Every parameter gets a gradient (zeros for the box branch): DDP needs them all.
        for name, p in model.named_parameters():
            self.assertIsNotNone(p.grad, name)
        self.assertEqual(model.head.centerness.weight.grad.abs().sum().item(), 0.0)
        self.assertGreater(model.head.cls_score.weight.grad.abs().sum().item(), 0.0)

    def test_positives_train_every_branch(self):
        model, _ = yacs_model()
        model.train()
        gts = [instances([[10, 10, 50, 40], [40, 5, 90, 60]], [0, 2]), instances([], [])]
        with EventStorage() as storage:
            losses = model(image_batch(gts))
            scalars = {k: v[0] for k, v in storage.latest().items()}
        for v in losses.values():
            self.assertTrue(torch.isfinite(v) and v.item() > 0)
        sum(losses.values()).backward()
        for p in (model.head.bbox_pred.weight, model.head.centerness.weight, model.head.scales):
            self.assertGreater(p.grad.abs().sum().item(), 0.0)
        self.assertGreater(scalars["num_pos_anchors"], 0)
        self.assertEqual(scalars["atss/gt_without_pos"], 0.0)

    def test_inference_contract(self):
        model, cfg = yacs_model()
        model.eval()
        with torch.no_grad():
            out = model([{"image": torch.rand(3, 64, 96) * 255, "height": 128, "width": 192}])
        inst = out[0]["instances"]
        self.assertEqual(inst.image_size, (128, 192))
        self.assertLessEqual(len(inst), cfg.TEST.DETECTIONS_PER_IMAGE)
        self.assertTrue(set(inst.get_fields()) >= {"pred_boxes", "scores", "pred_classes"})
        if len(inst):
            self.assertTrue(((inst.scores > 0) & (inst.scores <= 1)).all())
            self.assertTrue((inst.pred_classes < model.num_classes).all())


class TestNormalizer(unittest.TestCase):
    def test_single_worker_zero_positives(self):
        num_pos, ctr = atss_loss_normalizers(torch.tensor(0), torch.tensor(0.0))
        self.assertEqual(num_pos, 1.0)
        self.assertGreater(ctr, 0.0)
        self.assertEqual(atss_loss_normalizers(torch.tensor(7), torch.tensor(2.5)), (7.0, 2.5))

    def test_helpers_check_their_arguments_by_name(self):
        with self.assertRaisesRegex(ValueError, r"^atss_loss_normalizers: num_pos and centerness"):
            atss_loss_normalizers(torch.tensor([1, 2]), torch.tensor(0.0))
        with self.assertRaisesRegex(ValueError, r"^centerness_targets: anchors and gt_boxes"):
            centerness_targets(torch.zeros(3, 4), torch.zeros(2, 4))
        with self.assertRaisesRegex(ValueError, r"^centerness_targets: anchors and gt_boxes"):
            centerness_targets(torch.zeros(3, 3), torch.zeros(3, 3))


def _normalizer_worker(rank, init_method, out_dir):
    dist.init_process_group(
        "gloo", init_method=init_method, rank=rank, world_size=2, timeout=timedelta(seconds=60)
    )
    calls = []
    real = dist.all_reduce

    def counting_all_reduce(t, *a, **kw):
        calls.append(t.clone())
        return real(t, *a, **kw)

    atss_losses.dist.all_reduce = counting_all_reduce
    # Rank 0 has no positive at all; rank 1 has 6 with centerness summing to 3.
    if rank == 0:
        res = atss_loss_normalizers(torch.tensor(0), torch.zeros(()))
    else:
        res = atss_loss_normalizers(torch.tensor(6), torch.tensor(3.0))
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"result": res, "calls": len(calls)}))
    dist.barrier()
    # Not destroy_process_group(): with gloo it sometimes blocks forever on a non-zero rank
    # once rank 0 (the store's host) has gone; nothing is left to clean up here.
    os._exit(0)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_normalizer_all_reduces_on_every_worker(tmp_path):
    """A real 2-process gloo group: the worker without positives takes part and agrees."""
    context = mp.spawn(
        _normalizer_worker,
        args=(f"tcp://127.0.0.1:{_free_port()}", str(tmp_path)),
        nprocs=2,
        join=False,
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail("the 2-process normaliser test did not finish in 120 s")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in results:
        assert r["calls"] == 1
        assert r["result"] == [3.0, 1.5]  # (0 + 6) / 2 positives, (0 + 3) / 2 centerness


class TestConfigs(unittest.TestCase):
    def test_yacs_and_lazy_build_the_same_models(self):
        for name in (
            ATSS_QUICK,
            RETINANET_ATSS_QUICK,
            CONFIGS / "COCO-Detection" / "atss_R_50_FPN_1x",
        ):
            y, _ = yacs_model(name)
            z = instantiate(load_lazy_config(str(name) + ".py", []).model)
            self.assertIs(type(y), type(z))
            self.assertEqual(
                {k: v.shape for k, v in y.state_dict().items()},
                {k: v.shape for k, v in z.state_dict().items()},
            )
            self.assertEqual(repr(y.anchor_matcher), repr(z.anchor_matcher))
            self.assertEqual(
                y.anchor_generator.num_cell_anchors, z.anchor_generator.num_cell_anchors
            )
            for a, b in zip(y.anchor_generator.cell_anchors, z.anchor_generator.cell_anchors):
                self.assertTrue(torch.equal(a, b))
            self.assertEqual(y.anchor_generator.offset, z.anchor_generator.offset)
            self.assertEqual(y.box2box_transform.weights, tuple(z.box2box_transform.weights))
            self.assertEqual(y.test_nms_thresh, z.test_nms_thresh)
            self.assertEqual(y.test_score_thresh, z.test_score_thresh)
            if isinstance(y, ATSS):
                self.assertEqual(y.box_loss_weight, z.box_loss_weight)
                self.assertEqual(y.backbone.top_block.in_feature, "p5")
                self.assertEqual(z.backbone.top_block.in_feature, "p5")

    def test_paper_hyperparameters(self):
        model, cfg = yacs_model(CONFIGS / "COCO-Detection" / "atss_R_50_FPN_1x")
        self.assertIsInstance(model, ATSS)
        self.assertEqual(repr(model.anchor_matcher), "ATSSMatcher(topk=9, center_margin=0.01)")
        self.assertEqual(model.anchor_generator.num_cell_anchors, [1] * 5)
        sizes = [a[0, 2].item() - a[0, 0].item() for a in model.anchor_generator.cell_anchors]
        self.assertEqual(sizes, [64, 128, 256, 512, 1024])  # 8 x stride
        self.assertEqual(model.box_loss_weight, 2.0)
        self.assertEqual(model.test_nms_thresh, 0.6)
        self.assertEqual(len(model.head.cls_subnet), 12)  # 4 x (conv, GN, ReLU)
        self.assertIsInstance(model.head.cls_subnet[1], torch.nn.GroupNorm)
        self.assertEqual(cfg.INPUT.MIN_SIZE_TRAIN, (800,))

    def test_bad_values_name_the_key(self):
        for name, key, value in [
            (ATSS_QUICK, "MODEL.ATSS.TOPK", "0"),
            (RETINANET_ATSS_QUICK, "MODEL.ATSS.TOPK", "-1"),
            (ATSS_QUICK, "MODEL.ATSS.CENTER_MARGIN", "-0.5"),
            (ATSS_QUICK, "MODEL.ATSS.BOX_LOSS_WEIGHT", "-1.0"),
            (ATSS_QUICK, "MODEL.ATSS.NUM_CONVS", "0"),
        ]:
            with self.assertRaises(ValueError) as ctx:
                yacs_model(name, [key, value])
            self.assertTrue(str(ctx.exception).startswith(key + " must be"), ctx.exception)
            self.assertIn(value, str(ctx.exception))

    def test_lazy_config_errors_name_the_argument(self):
        # LazyConfig keys are the constructors' argument names, and so are the messages.
        for name, override, message in [
            (ATSS_QUICK, "model.anchor_matcher.topk=0", "ATSSMatcher: topk must be"),
            (RETINANET_ATSS_QUICK, "model.anchor_matcher.center_margin=-1.0", "ATSSMatcher: "),
            (ATSS_QUICK, "model.box_loss_weight=-2.0", "ATSS: box_loss_weight must be"),
            (ATSS_QUICK, "model.head.conv_dims=[]", "ATSSHead: conv_dims must"),
        ]:
            cfg = load_lazy_config(str(name) + ".py", [override])
            with self.assertRaises(ValueError) as ctx:
                instantiate(cfg.model)
            self.assertTrue(str(ctx.exception).startswith(message), ctx.exception)
            self.assertNotIn("MODEL.", str(ctx.exception))

    def test_retinanet_atss_rejects_an_iou_matcher(self):
        cfg = load_lazy_config(str(RETINANET_ATSS_QUICK) + ".py", [])
        cfg.model.anchor_matcher = L(Matcher)(thresholds=[0.4, 0.5], labels=[0, -1, 1])
        with self.assertRaisesRegex(ValueError, "anchor_matcher must be an ATSSMatcher"):
            instantiate(cfg.model)


# ------------------------------------------------------------------------------------------
# End to end: train_net.py, a few iterations each.
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_dataset(tmp_path_factory):
    """
    A 2-image COCO json from synthetic_mini_train: one image without annotations and one with,
    same orientation (so aspect-ratio grouping batches them together). With 2 images per
    batch every batch holds the empty one; with 2 workers x 1 image, exactly one worker gets
    it in every iteration.
    """
    json_file = generate_synthetic_dataset("synthetic_mini_train")
    _, image_root = synthetic_paths("synthetic_mini_train")
    data = json.loads(Path(json_file).read_text())
    annotated = {a["image_id"] for a in data["annotations"]}
    empty = next(im for im in data["images"] if im["id"] not in annotated)
    landscape = empty["width"] > empty["height"]
    full = next(
        im
        for im in data["images"]
        if im["id"] in annotated and (im["width"] > im["height"]) == landscape
    )
    data["images"] = [empty, full]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == full["id"]]
    out = tmp_path_factory.mktemp("atss_mixed") / "mixed.json"
    out.write_text(json.dumps(data))
    return ["--coco-dataset", "atss_mixed", str(out), str(image_root)]


def check_training_metrics(output_dir, num_candidates, require_logged=True):
    """
    What holds whatever the weights are: finite losses, an evaluation at the end, and every
    logged ``atss/num_candidates`` (per GT, fixed by the config and the image size) inside
    ``num_candidates = (low, high)``, ``low < value <= high``.

    Returns:
        (dict, list[dict]): the last training record, and every record that logged the ATSS
        statistics (only the main worker writes metrics, and an iteration whose images have no
        GT logs none).
    """
    metrics = read_metrics(output_dir)
    train = [m for m in metrics if "total_loss" in m]
    assert train, metrics
    for m in train:
        assert math.isfinite(m["total_loss"])
    logged = [m for m in metrics if "atss/num_candidates" in m]
    low, high = num_candidates
    assert all(low < m["atss/num_candidates"] <= high for m in logged), logged
    assert logged or not require_logged
    assert any("bbox/AP" in m for m in metrics)  # evaluated at the end (a value, maybe NaN)
    return train[-1], logged


# The training images are resized to a short side of 256-320 px (at most 448 long), so P7 holds
# 2 x 2 locations or more and every level at least 4: with k = 5 and one anchor per location,
# 5 x 4 + 4 = 24 or 25 candidates per GT (k = 9 would give 40 or more).
ATSS_K5_CANDIDATES = (5 * 4, 5 * 5)


@pytest.mark.slow
def test_e2e_yacs_atss_with_empty_image(tmp_path, mixed_dataset):
    out = tmp_path / "out"
    run_train_net(
        *mixed_dataset,
        "--config-file",
        str(ATSS_QUICK) + ".yaml",
        "DATASETS.TRAIN",
        "('atss_mixed',)",
        "DATALOADER.FILTER_EMPTY_ANNOTATIONS",
        "False",
        "MODEL.ATSS.TOPK",
        "5",
        "SEED",
        "0",
        "OUTPUT_DIR",
        out,
    )
    # Every batch holds the annotated image, so every iteration logs; the override took effect.
    last, logged = check_training_metrics(out, ATSS_K5_CANDIDATES)
    assert "atss/num_candidates" in last
    assert {"loss_cls", "loss_box_reg", "loss_centerness"} <= set(last)
    assert (out / "model_final.pth").is_file()


@pytest.mark.slow
def test_e2e_lazy_atss_two_workers_one_without_gt(tmp_path, mixed_dataset):
    out = tmp_path / "out"
    run_train_net(
        *mixed_dataset,
        "--num-gpus",
        "2",
        "--check-weight-sync",
        "--config-file",
        str(ATSS_QUICK) + ".py",
        "dataloader.train.dataset.names=atss_mixed",
        "+dataloader.train.dataset.filter_empty=False",
        "model.anchor_matcher.topk=5",
        "train.seed=0",
        f"train.output_dir={out}",
        timeout=600,
    )
    # The main worker may hold the image without GT in every iteration: nothing to log then.
    check_training_metrics(out, ATSS_K5_CANDIDATES, require_logged=False)
    assert_workers_agree(out)


# RetinaNet + ATSS on synthetic_mini_train with its empty images kept: 2 of its 16 images have
# no GT, so of the 4 batches of 2 images at most one has none, and some iteration logs the
# statistics whatever the data order; read them from the records that have them, never from
# the last window (it may be that GT-less batch).


@pytest.mark.slow
def test_e2e_yacs_retinanet_atss(tmp_path):
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        str(RETINANET_ATSS_QUICK) + ".yaml",
        "OUTPUT_DIR",
        out,
        "DATALOADER.FILTER_EMPTY_ANNOTATIONS",
        "False",
        "SEED",
        "0",
    )
    # k x 9 anchors per location per level (fewer where a level is smaller): the 9 reached
    # the matcher (one anchor per location would give at most 5 x 9).
    check_training_metrics(out, (5 * 9, 5 * 81))


@pytest.mark.slow
def test_e2e_lazy_retinanet_atss(tmp_path):
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        str(RETINANET_ATSS_QUICK) + ".py",
        f"train.output_dir={out}",
        "model.anchor_matcher.topk=3",
        "+dataloader.train.dataset.filter_empty=False",
        "train.seed=0",
    )
    # Every level has at least 2 x 2 locations x 9 = 36 >= 3 x 9 anchors: exactly 5 x 27
    # candidates per GT, whatever the image size (the override and the 9 both took effect).
    check_training_metrics(out, (5 * 27 - 1, 5 * 27))
