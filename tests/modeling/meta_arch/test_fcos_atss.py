"""
FCOS with ATSS assignment (FCOSATSS) and Detectron2's FCOS in yacs form (ConfigurableFCOS):
the assignment equals the matcher's on 8S squares centered on FCOS's points, FCOS's losses and
output contract are kept, the yacs form is Detectron2's FCOS, bad values are rejected at build
time naming the key, and end-to-end runs from both config systems (images without
annotations, 2 processes).
"""

import math

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import instantiate
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.fcos import FCOS
from detectron2.utils.events import EventStorage

from d2_sampling.engine.setup import load_yacs_config
from d2_sampling.modeling import FCOSATSS, ATSSMatcher, ConfigurableFCOS, anchor_grid

from helpers import CONFIGS, assert_workers_agree, gt_instances, read_metrics, run_train_net

QUICK = CONFIGS / "quick_schedules" / "fcos_atss_tiny_FPN_instant_test"


def yacs_model(opts=(), name=QUICK):
    cfg = load_yacs_config(str(name) + ".yaml", ["MODEL.DEVICE", "cpu", *opts])
    torch.manual_seed(0)
    return build_model(cfg), cfg


instances = gt_instances


def features_of(model, size=(64, 96)):
    feats = model.backbone(torch.zeros(1, 3, *size))
    return [feats[f] for f in model.head_in_features]


def test_assignment_is_atss_on_squares_centered_on_fcos_points():
    model, _ = yacs_model()
    feats = features_of(model)
    points = model.anchor_generator(feats)
    squares = model.atss_anchor_generator(feats)
    for p, q, stride in zip(points, squares, model.anchor_generator.strides):
        assert torch.allclose(p.get_centers(), q.get_centers())
        side = q.tensor[:, 2] - q.tensor[:, 0]
        assert torch.allclose(side, torch.full_like(side, 4.0 * stride))  # the config's scale
    gts = [instances([[10, 10, 50, 40], [40, 5, 90, 60]], [0, 2]), instances([], [])]
    with EventStorage() as storage:
        labels, boxes = model.label_anchors(
            squares, gts, anchor_grid(model.atss_anchor_generator, feats)
        )
        logged = storage.latest()
    matches, fg = ATSSMatcher(9)(gts[0].gt_boxes, squares, 1)
    expected = torch.where(fg.bool(), gts[0].gt_classes[matches], model.num_classes)
    assert torch.equal(labels[0], expected)
    assert torch.equal(boxes[0][fg.bool()], gts[0].gt_boxes.tensor[matches[fg.bool()]])
    assert (labels[1] == model.num_classes).all()  # no GT: all background, never -1
    assert fg.sum() > 0 and logged["atss/num_pos_per_gt"][0] == fg.sum().item() / 2
    # Not FCOS's own rule (center sampling + scale ranges) on this scene.
    fcos_labels, _ = FCOS.label_anchors(model, points, gts[:1])
    assert not torch.equal(fcos_labels[0], labels[0])


def test_losses_and_outputs_are_fcos():
    model, _ = yacs_model()
    model.train()
    batch = [
        {"image": torch.rand(3, 64, 96) * 255, "instances": instances([[10, 10, 50, 40]], [1])},
        {"image": torch.rand(3, 64, 96) * 255, "instances": instances([], [])},
    ]
    with EventStorage():
        losses = model(batch)
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.head.parameters())
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.rand(3, 64, 96) * 255}])
    assert set(out["instances"].get_fields()) == {"pred_boxes", "scores", "pred_classes"}


def test_yacs_fcos_is_detectron2s_fcos():
    """ConfigurableFCOS from our yacs config == Detectron2's FCOS from its own LazyConfig."""
    cfg = load_yacs_config(
        str(CONFIGS / "COCO-Detection/fcos_R_50_FPN_1x.yaml"), ["MODEL.DEVICE", "cpu"]
    )
    ours = build_model(cfg)
    theirs_cfg = model_zoo.get_config("common/models/fcos.py").model
    theirs = instantiate(theirs_cfg)
    assert type(theirs) is FCOS and isinstance(ours, FCOS) and type(ours) is ConfigurableFCOS
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in theirs_sd.items()}
    for attr in (
        "center_sampling_radius",
        "test_score_thresh",
        "test_nms_thresh",
        "test_topk_candidates",
        "num_classes",
        "focal_loss_alpha",
        "focal_loss_gamma",
    ):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    ours.load_state_dict(theirs_sd)
    ours.train(), theirs.train()
    batch = [
        {
            "image": torch.rand(3, 96, 128) * 255,
            "instances": instances([[10, 10, 60, 70]], [3], (96, 128)),
        }
    ]
    with EventStorage():
        a, b = ours(batch), theirs(batch)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "opts, message",
    [
        (["MODEL.FCOS.ATSS_ANCHOR_SCALE", "0.0"], "MODEL.FCOS.ATSS_ANCHOR_SCALE must be"),
        (["MODEL.FCOS.NUM_CONVS", "0"], "MODEL.FCOS.NUM_CONVS must be"),
        (["MODEL.ATSS.TOPK", "0"], "MODEL.ATSS.TOPK must be"),
        (["MODEL.RETINANET.IN_FEATURES", "['p9']"], "MODEL.RETINANET.IN_FEATURES"),
    ],
)
def test_bad_values_rejected_at_build_naming_the_key(opts, message):
    with pytest.raises(ValueError, match=message):
        yacs_model(opts)


def test_lazy_arguments_checked():
    _, cfg = yacs_model()
    from d2_sampling.modeling.meta_arch.fcos_atss import FCOSATSS as cls

    args = cls.from_config(cfg)
    with pytest.raises(ValueError, match="anchor_matcher must be an ATSSMatcher"):
        FCOSATSS(**{**args, "anchor_matcher": object()})
    with pytest.raises(ValueError, match="atss_anchor_scale must be > 0"):
        FCOSATSS(**{**args, "atss_anchor_scale": -1})


def _train_records(out):
    metrics = read_metrics(out)
    train = [m for m in metrics if "total_loss" in m]
    assert train and all(math.isfinite(m["total_loss"]) for m in train)
    return metrics


@pytest.mark.slow
def test_e2e_yacs_with_empty_images_and_override(tmp_path):
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        str(QUICK) + ".yaml",
        "DATALOADER.FILTER_EMPTY_ANNOTATIONS",
        "False",
        "MODEL.ATSS.TOPK",
        5,
        "SOLVER.MAX_ITER",
        8,
        "OUTPUT_DIR",
        out,
    )
    metrics = _train_records(out)
    logged = [m["atss/num_candidates"] for m in metrics if "atss/num_candidates" in m]
    # k = 5 per level over 5 levels, fewer on levels smaller than 5 locations: <= 25, > 5.
    assert logged and all(5 < n <= 25 for n in logged), logged
    assert any("bbox/AP" in m for m in metrics)


@pytest.mark.slow
def test_e2e_lazy_with_override(tmp_path):
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        str(QUICK) + ".py",
        "model.anchor_matcher.topk=3",
        "+dataloader.train.dataset.filter_empty=False",
        f"train.output_dir={out}",
    )
    metrics = _train_records(out)
    logged = [m["atss/num_candidates"] for m in metrics if "atss/num_candidates" in m]
    assert logged and all(3 < n <= 15 for n in logged), logged
    assert any("bbox/AP" in m for m in metrics)


@pytest.mark.slow
def test_e2e_yacs_two_process(tmp_path):
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        str(QUICK) + ".yaml",
        "--num-gpus",
        2,
        "--check-weight-sync",
        "OUTPUT_DIR",
        out,
    )
    assert_workers_agree(out)
    _train_records(out)
