"""The ATSS and RetinaNetATSS meta-architectures: labels, losses, normaliser, configs, e2e."""

import json
import math
import os
import socket
import time
import unittest
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import d2_sampling  # noqa: F401
from d2_sampling.data import generate_synthetic_dataset, synthetic_paths
from d2_sampling.engine.setup import load_lazy_config, load_yacs_config
from d2_sampling.modeling import ATSS, ATSSMatcher, RetinaNetATSS
from d2_sampling.modeling.meta_arch import atss as atss_module
from d2_sampling.modeling.meta_arch.atss import atss_loss_normalizers, centerness_targets
from detectron2.config import instantiate
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from helpers import CONFIGS, read_metrics, run_train_net

ATSS_QUICK = CONFIGS / "quick_schedules" / "atss_tiny_FPN_instant_test"
RETINANET_ATSS_QUICK = CONFIGS / "quick_schedules" / "retinanet_tiny_FPN_atss_instant_test"


def yacs_model(name=ATSS_QUICK, opts=()):
    cfg = load_yacs_config(str(name) + ".yaml", ["MODEL.DEVICE", "cpu", *opts])
    torch.manual_seed(0)
    return build_model(cfg), cfg


def instances(boxes, classes, size=(64, 96)):
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


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

    def test_retinanet_atss_uses_atss_matcher_with_nine_anchors(self):
        model, _ = yacs_model(RETINANET_ATSS_QUICK)
        self.assertIsInstance(model, RetinaNetATSS)
        self.assertIsInstance(model.anchor_matcher, ATSSMatcher)
        self.assertEqual(model.anchor_matcher.anchors_per_location, 9)


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


def _normalizer_worker(rank, init_method, out_dir):
    dist.init_process_group(
        "gloo", init_method=init_method, rank=rank, world_size=2, timeout=timedelta(seconds=60)
    )
    calls = []
    real = dist.all_reduce

    def counting_all_reduce(t, *a, **kw):
        calls.append(t.clone())
        return real(t, *a, **kw)

    atss_module.dist.all_reduce = counting_all_reduce
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
        self.assertEqual(
            repr(model.anchor_matcher),
            "ATSSMatcher(topk=9, anchors_per_location=1, center_margin=0.01)",
        )
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
            self.assertIn(key, str(ctx.exception))
            self.assertIn(value, str(ctx.exception))


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


def check_training_metrics(output_dir, num_candidates=None, require_logged=True):
    metrics = read_metrics(output_dir)
    train = [m for m in metrics if "total_loss" in m]
    assert train, metrics
    for m in train:
        assert math.isfinite(m["total_loss"])
    if num_candidates is not None:
        # Only the main worker writes metrics; in an iteration where its images have no GT
        # there is no per-GT statistic to log.
        logged = [m["atss/num_candidates"] for m in train if "atss/num_candidates" in m]
        assert all(v == num_candidates for v in logged), logged
        assert logged or require_logged is False
    assert any("bbox/AP" in m for m in metrics)  # evaluated at the end
    return train[-1]


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
        "OUTPUT_DIR",
        out,
    )
    last = check_training_metrics(out, num_candidates=5 * 5)  # the override took effect
    assert {"loss_cls", "loss_box_reg", "loss_centerness"} <= set(last)
    assert (out / "model_final.pth").is_file()


@pytest.mark.slow
def test_e2e_lazy_atss_two_workers_one_without_gt(tmp_path, mixed_dataset):
    out = tmp_path / "out"
    run_train_net(
        *mixed_dataset,
        "--num-gpus",
        "2",
        "--config-file",
        str(ATSS_QUICK) + ".py",
        "dataloader.train.dataset.names=atss_mixed",
        "+dataloader.train.dataset.filter_empty=False",
        "model.anchor_matcher.topk=5",
        f"train.output_dir={out}",
        timeout=600,
    )
    check_training_metrics(out, num_candidates=5 * 5, require_logged=False)
    digests = json.loads((out / "weights_digest.json").read_text())
    assert digests["world_size"] == 2
    assert len(digests["digests"]) == 2 and len(set(digests["digests"])) == 1


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
    )
    check_training_metrics(out)
    # With empty images allowed, the last logged window may hold only GT-less images, which
    # log no per-GT statistic: read the latest record that has one.
    logged = [m for m in read_metrics(out) if "atss/num_candidates" in m]
    assert logged
    # k x 9 anchors per location per level (fewer where a level is smaller): far above 5 x 9.
    assert 5 * 9 < logged[-1]["atss/num_candidates"] <= 5 * 81


@pytest.mark.slow
def test_e2e_lazy_retinanet_atss(tmp_path):
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        str(RETINANET_ATSS_QUICK) + ".py",
        f"train.output_dir={out}",
        "model.anchor_matcher.topk=3",
        "+dataloader.train.dataset.filter_empty=False",
    )
    last = check_training_metrics(out)
    assert 5 * 3 < last["atss/num_candidates"] <= 5 * 27
