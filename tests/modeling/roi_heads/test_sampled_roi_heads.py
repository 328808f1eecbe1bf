"""
The ROI sampler as a choice (``SampledROIHeads`` / ``with_roi_sampler``): on
``StandardROIHeads`` it trains exactly as ``IoUBalancedROIHeads`` / ``OHEMROIHeads``; on Cascade
R-CNN it samples with stage 1's matcher and scores with stage 1's box head; bad combinations
and values fail at config or build time naming the key; the heads keep their class's weights,
pickle, and train end to end from yacs and LazyConfig (2 processes, images without annotations).
"""

import copy
import math
import pickle
import re

import pytest
import torch
import yaml
from detectron2.config import instantiate
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import CascadeROIHeads, StandardROIHeads
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import EventStorage

from d2_sampling.engine.setup import load_lazy_config, load_yacs_config
from d2_sampling.modeling import (
    IoUBalancedROIHeads,
    IoUBalancedSampling,
    OHEMROIHeads,
    OHEMSampling,
    RandomSampling,
    fast_rcnn_per_roi_losses,
    sampled_roi_heads,
    with_roi_sampler,
)

from helpers import (
    CONFIGS,
    assert_workers_agree,
    read_metrics,
    run_train_net,
    sampled_opts,
    write_empty_images_dataset,
)

QUICK = CONFIGS / "quick_schedules"
FASTER_YAML = QUICK / "faster_rcnn_tiny_FPN_instant_test.yaml"
CASCADE_OHEM_YAML = QUICK / "cascade_rcnn_tiny_FPN_ohem_instant_test.yaml"
CASCADE_IOU_YAML = QUICK / "cascade_rcnn_tiny_FPN_iou_balanced_instant_test.yaml"
CASCADE_IOU_PY = QUICK / "cascade_rcnn_tiny_FPN_iou_balanced_instant_test.py"


def build(config, *opts, seed=0):
    torch.manual_seed(seed)
    cfg = load_yacs_config(str(config), [str(o) for o in opts], register_datasets=False)
    return build_model(cfg).train()


def inputs(model, seed=0, num_props=300):
    """Two 128 x 160 images: random FPN features, proposals around 3 GTs (image 0) and random
    proposals with no GT (image 1)."""
    g = torch.Generator().manual_seed(seed)
    h, w = 128, 160
    features = {
        name: torch.randn(2, s.channels, h // s.stride, w // s.stride, generator=g)
        for name, s in model.backbone.output_shape().items()
    }
    gt = torch.tensor([[10.0, 10.0, 50.0, 60.0], [70.0, 20.0, 120.0, 70.0], [30, 80, 90, 120]])
    jitter = torch.randn(num_props, 4, generator=g) * 12
    boxes0 = gt[torch.arange(num_props) % 3] + jitter
    xy = torch.rand(num_props, 2, generator=g) * torch.tensor([w - 30.0, h - 30.0])
    boxes1 = torch.cat([xy, xy + 10 + 20 * torch.rand(num_props, 2, generator=g)], dim=1)
    proposals, targets = [], []
    for boxes, n_gt in ((boxes0, 3), (boxes1, 0)):
        p = Instances((h, w))
        b = Boxes(boxes.clone())
        b.clip((h, w))
        p.proposal_boxes = b
        p.objectness_logits = torch.randn(num_props, generator=g)
        proposals.append(p)
        t = Instances((h, w))
        t.gt_boxes = Boxes(gt[:n_gt].clone())
        t.gt_classes = torch.tensor([0, 2, 4][:n_gt], dtype=torch.int64)
        targets.append(t)
    return features, proposals, targets


def train_step(heads, features, proposals, targets, seed=0):
    torch.manual_seed(seed)
    with EventStorage() as storage:
        rois, losses = heads(None, features, copy.deepcopy(proposals), targets)
    return rois, losses, storage


def same_rois(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x.proposal_boxes.tensor, y.proposal_boxes.tensor)
        assert torch.equal(x.gt_classes, y.gt_classes)


# ---- On StandardROIHeads: the same training as the dedicated classes -----------------------


@pytest.mark.parametrize(
    "dedicated, sampler",
    [("IoUBalancedROIHeads", "IoUBalancedSampling"), ("OHEMROIHeads", "OHEMSampling")],
)
def test_standard_heads_with_sampler_train_as_the_dedicated_class(dedicated, sampler):
    ref = build(FASTER_YAML, "MODEL.ROI_HEADS.NAME", dedicated)
    model = build(FASTER_YAML, *sampled_opts(sampler))
    assert isinstance(model.roi_heads, StandardROIHeads)
    assert type(model.roi_heads).__name__ == f"StandardROIHeadsWith{sampler}"
    # The same parameters and buffers under the same names: checkpoints are interchangeable.
    assert model.roi_heads.state_dict().keys() == ref.roi_heads.state_dict().keys()
    model.roi_heads.load_state_dict(ref.roi_heads.state_dict())
    features, proposals, targets = inputs(model)
    rois_ref, losses_ref, storage_ref = train_step(ref.roi_heads, features, proposals, targets)
    rois, losses, storage = train_step(model.roi_heads, features, proposals, targets)
    same_rois(rois, rois_ref)
    assert losses.keys() == losses_ref.keys()
    for k in losses:
        assert torch.equal(losses[k], losses_ref[k]), k
    logged = {k: v[0] for k, v in storage.latest().items()}
    assert logged == {k: v[0] for k, v in storage_ref.latest().items()}


def test_random_sampling_leaves_the_heads_as_they_are():
    model = build(FASTER_YAML, *sampled_opts("RandomSampling"))
    assert type(model.roi_heads) is StandardROIHeads
    heads = model.roi_heads
    assert with_roi_sampler(heads, RandomSampling()) is heads and type(heads) is StandardROIHeads


# ---- Cascade R-CNN --------------------------------------------------------------------------


def test_cascade_iou_balanced_samples_with_stage_1_matcher():
    model = build(CASCADE_IOU_YAML)
    heads = model.roi_heads
    assert isinstance(heads, CascadeROIHeads) and heads.num_bins == 3
    assert heads.proposal_matcher is heads.proposal_matchers[0]
    features, proposals, targets = inputs(model)
    rois, losses, storage = train_step(heads, features, proposals, targets)
    # Stage 1 sees the sampled batch; the sampler drew exactly batch_size_per_image ROIs from
    # the 300 proposals + GTs of each image, at most 25% positives.
    assert [len(r) for r in rois] == [heads.batch_size_per_image] * 2
    fg = (rois[0].gt_classes >= 0) & (rois[0].gt_classes < heads.num_classes)
    assert 0 < int(fg.sum()) <= heads.positive_fraction * heads.batch_size_per_image
    # Positives by stage 1's matcher (IoU >= 0.5), including some stage 2 would call background.
    iou = pairwise_iou(rois[0].proposal_boxes, targets[0].gt_boxes).max(dim=1).values
    assert bool((iou[fg] >= 0.5).all()) and bool((iou[fg] < 0.6).any())
    assert bool((iou[~fg] < 0.5).all())
    assert not rois[1].has("gt_boxes") and bool((rois[1].gt_classes == heads.num_classes).all())
    latest = storage.latest()
    for key in ("roi_head/iou_balanced_neg_bin0", "stage1/roi_head/num_fg_samples"):
        assert key in latest, key
    assert {f"loss_cls_stage{k}" for k in range(3)} <= losses.keys()
    assert all(math.isfinite(float(v)) for v in losses.values())


def test_cascade_ohem_scores_with_stage_1_box_head():
    model = build(CASCADE_OHEM_YAML)
    heads = model.roi_heads
    assert isinstance(heads, CascadeROIHeads) and heads.ohem_batch_size_per_image == 64
    features, proposals, targets = inputs(model)
    pools, _ = heads.label_pool(copy.deepcopy(proposals), targets)
    scored = heads.score_pool(features, pools)
    with torch.no_grad():
        x = heads.box_pooler(
            [features[f] for f in heads.box_in_features], [p.proposal_boxes for p in pools]
        )
        pred = heads.box_predictor[0](heads.box_head[0](x))
        cls, box = fast_rcnn_per_roi_losses(heads.box_predictor[0], pred, pools)
    torch.testing.assert_close(torch.cat(scored), (cls + box).float(), rtol=0, atol=0)
    # A later stage's head would rank differently: the scores are stage 1's, not any stage's.
    with torch.no_grad():
        pred2 = heads.box_predictor[2](heads.box_head[2](x))
        cls2, box2 = fast_rcnn_per_roi_losses(heads.box_predictor[2], pred2, pools)
    assert not torch.equal(cls + box, cls2 + box2)

    rois, losses, storage = train_step(heads, features, proposals, targets)
    want = heads.select(pools, scored)
    assert [len(r) for r in rois] == [len(i) for i in want]
    for r, pool, idx in zip(rois, pools, want):
        assert torch.equal(r.proposal_boxes.tensor, pool.proposal_boxes.tensor[idx])
    assert all(len(r) <= 64 for r in rois)
    assert "roi_head/ohem_loss_selected" in storage.latest()
    assert "stage2/roi_head/num_fg_samples" in storage.latest()
    assert {f"loss_box_reg_stage{k}" for k in range(3)} <= losses.keys()
    assert all(math.isfinite(float(v)) for v in losses.values())


def test_ohem_needs_the_forward_features():
    heads = build(CASCADE_OHEM_YAML).roi_heads
    _, proposals, targets = inputs(build(FASTER_YAML))
    with pytest.raises(RuntimeError, match="features"):
        heads.label_and_sample_proposals(proposals, targets)


def test_inference_is_the_heads_own():
    plain = build(FASTER_YAML, *_cascade_opts()).eval()
    model = build(CASCADE_OHEM_YAML).eval()
    model.load_state_dict(plain.state_dict())
    features, proposals, _ = inputs(model)
    with torch.no_grad():
        a, _ = plain.roi_heads(None, features, copy.deepcopy(proposals))
        b, _ = model.roi_heads(None, features, copy.deepcopy(proposals))
    for x, y in zip(a, b):
        assert torch.equal(x.pred_boxes.tensor, y.pred_boxes.tensor)
        assert torch.equal(x.scores, y.scores)


def _cascade_opts():
    return (
        "MODEL.ROI_HEADS.NAME",
        "CascadeROIHeads",
        "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG",
        True,
    )


def test_sampled_heads_pickle_and_copy():
    heads = build(CASCADE_IOU_YAML).roi_heads
    for clone in (pickle.loads(pickle.dumps(heads)), copy.deepcopy(heads)):
        assert type(clone) is type(heads) and clone.num_bins == heads.num_bins
        for (k, v), (k2, v2) in zip(heads.state_dict().items(), clone.state_dict().items()):
            assert k == k2 and torch.equal(v, v2)


def test_yacs_and_lazy_build_the_same_heads():
    ymodel = build(CASCADE_IOU_YAML)
    cfg = load_lazy_config(str(CASCADE_IOU_PY), ["model.roi_heads.sampler.num_bins=4"])
    lmodel = instantiate(cfg.model)
    assert type(lmodel.roi_heads) is type(ymodel.roi_heads)
    assert lmodel.roi_heads.num_bins == 4 and ymodel.roi_heads.num_bins == 3
    assert {k: v.shape for k, v in lmodel.state_dict().items()} == {
        k: v.shape for k, v in ymodel.state_dict().items()
    }


# ---- Bad combinations and values --------------------------------------------------------------


def test_sampler_keys_without_sampled_roi_heads_fail_at_config_time():
    for opts in (
        ("MODEL.ROI_SAMPLER.NAME", "OHEMSampling"),
        ("MODEL.ROI_SAMPLER.HEADS", "CascadeROIHeads"),
    ):
        with pytest.raises(ValueError, match="MODEL.ROI_SAMPLER.*SampledROIHeads"):
            load_yacs_config(str(FASTER_YAML), list(opts), register_datasets=False)


@pytest.mark.parametrize(
    "opts, key",
    [
        (sampled_opts("HardSampling"), "MODEL.ROI_SAMPLER.NAME"),
        (sampled_opts("OHEMSampling", heads="CascadeHeads"), "MODEL.ROI_SAMPLER.HEADS"),
        (sampled_opts("OHEMSampling", heads="SampledROIHeads"), "MODEL.ROI_SAMPLER.HEADS"),
        (sampled_opts("OHEMSampling") + ("MODEL.OHEM.LOSS", "box"), "MODEL.OHEM.LOSS"),
        (sampled_opts("IoUBalancedSampling") + ("MODEL.IOU_BALANCED.NUM_BINS", 0), "NUM_BINS"),
    ],
)
def test_bad_values_name_the_key(opts, key):
    with pytest.raises(ValueError, match=key):
        build(FASTER_YAML, *opts)


def test_with_roi_sampler_refuses_what_it_cannot_do():
    heads = build(FASTER_YAML).roi_heads
    with pytest.raises(TypeError, match="StandardROIHeads"):
        with_roi_sampler(torch.nn.Linear(1, 1), OHEMSampling())
    with pytest.raises(TypeError, match="sampler"):
        with_roi_sampler(heads, "OHEMSampling")
    # A bad setting names its key and leaves the heads as they were.
    with pytest.raises(ValueError, match="MODEL.OHEM.NMS_THRESH"):
        with_roi_sampler(heads, OHEMSampling(ohem_nms_thresh=float("nan")))
    assert type(heads) is StandardROIHeads
    # Heads that already choose their RoIs with one of ours.
    for name in ("IoUBalancedROIHeads", "OHEMROIHeads"):
        dedicated = build(FASTER_YAML, "MODEL.ROI_HEADS.NAME", name).roi_heads
        assert isinstance(dedicated, (IoUBalancedROIHeads, OHEMROIHeads))
        with pytest.raises(ValueError, match="already"):
            with_roi_sampler(dedicated, IoUBalancedSampling())
    sampled = with_roi_sampler(heads, IoUBalancedSampling())
    with pytest.raises(ValueError, match="already"):
        with_roi_sampler(sampled, OHEMSampling())


def test_lazy_entry_names_bad_heads():
    with pytest.raises(ValueError, match="NoSuchHeads"):
        sampled_roi_heads(heads="NoSuchHeads", sampler=OHEMSampling())


# ---- End to end ---------------------------------------------------------------------------


def _losses(metrics):
    return [m["total_loss"] for m in metrics if "total_loss" in m]


@pytest.mark.slow
def test_e2e_yacs_cascade_ohem_two_process(tmp_path):
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        CASCADE_OHEM_YAML,
        "--num-gpus",
        2,
        "--check-weight-sync",
        "OUTPUT_DIR",
        out,
    )
    assert_workers_agree(out)
    metrics = read_metrics(out)
    assert _losses(metrics) and all(math.isfinite(v) for v in _losses(metrics))
    assert any("roi_head/ohem_num_selected" in m for m in metrics)
    assert any("bbox/AP" in m for m in metrics)


@pytest.mark.slow
def test_e2e_yacs_cascade_iou_balanced_images_without_annotations(tmp_path):
    empty_json, image_root = write_empty_images_dataset(tmp_path)
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        CASCADE_IOU_YAML,
        "--coco-dataset",
        "sampled_test_empty",
        empty_json,
        image_root,
        "DATASETS.TRAIN",
        '("sampled_test_empty",)',
        "DATALOADER.FILTER_EMPTY_ANNOTATIONS",
        "False",
        "MODEL.IOU_BALANCED.NUM_BINS",
        4,
        "SOLVER.MAX_ITER",
        2,
        "OUTPUT_DIR",
        out,
    )
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["MODEL"]["ROI_SAMPLER"] == {
        "NAME": "IoUBalancedSampling",
        "HEADS": "CascadeROIHeads",
    }
    assert cfg["MODEL"]["IOU_BALANCED"]["NUM_BINS"] == 4
    metrics = read_metrics(out)
    assert _losses(metrics) and all(math.isfinite(v) for v in _losses(metrics))
    # No annotation: no foreground RoI in any stage, so no box loss.
    assert all(m["loss_box_reg_stage0"] == 0 for m in metrics if "loss_box_reg_stage0" in m)


@pytest.mark.slow
def test_e2e_lazy_cascade_iou_balanced_with_override(tmp_path):
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        CASCADE_IOU_PY,
        "model.roi_heads.sampler.num_bins=5",
        f"train.output_dir={out}",
    )
    # (The written LazyConfig holds ShapeSpec objects: not safe_load-able, read as text.)
    written = (out / "config.yaml").read_text()
    assert "num_bins: 5" in written and "heads: CascadeROIHeads" in written
    assert re.search(r"_target_: d2_sampling\.[\w.]*\.sampled_roi_heads\n", written)
    metrics = read_metrics(out)
    assert _losses(metrics) and all(math.isfinite(v) for v in _losses(metrics))
    assert any("roi_head/iou_balanced_neg_bin4" in m for m in metrics)


@pytest.mark.slow
def test_benchmark_quick(tmp_path):
    """benchmarks/bench_samplers.py --quick: one iteration of every (heads, sampler), every row."""
    import json

    from helpers import run_script

    out = tmp_path / "bench.json"
    run_script("benchmarks/bench_samplers.py", "--quick", "--json", out)
    res = json.loads(out.read_text())
    heads = ("Faster R-CNN", "Cascade R-CNN")
    samplers = ("random", "random, 64 RoIs", "IoU-balanced", "OHEM")
    assert set(res["ms"]) == {f"{h}, {s}" for h in heads for s in samplers}
    assert set(res["ratios"]) == {f"{h}, {s}" for h in heads for s in ("IoU-balanced", "OHEM")}
    assert set(res["cascade_over_faster"]) == {"IoU-balanced", "OHEM"}
    assert all(v > 0 for v in res["ms"].values())
