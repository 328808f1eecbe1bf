"""The Fast R-CNN predictor with Libra R-CNN's balanced L1 box loss, and its yacs switch."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform

from d2_sampling.engine.setup import load_yacs_config
from d2_sampling.modeling import BalancedL1FastRCNNOutputLayers, balanced_l1_loss

from helpers import sampled_opts

CONFIG = "configs/Synthetic/faster_rcnn_tiny_FPN_iou_balanced.yaml"


def cfg_with(*opts):
    return load_yacs_config(CONFIG, ["MODEL.DEVICE", "cpu", *opts])


def test_box_loss_exact_on_a_hand_case():
    cfg = cfg_with("MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE", "balanced_l1")
    model = build_model(cfg)
    predictor = model.roi_heads.box_predictor
    assert isinstance(predictor, BalancedL1FastRCNNOutputLayers)
    k = predictor.num_classes
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 25.0, 15.0], [0.0, 0.0, 4.0, 4.0]])
    gts = torch.tensor([[1.0, 0.0, 11.0, 12.0], [4.0, 6.0, 24.0, 18.0], [0.0, 0.0, 1.0, 1.0]])
    classes = torch.tensor([0, 1, k])  # two foreground, one background
    deltas = torch.arange(3 * 4 * k, dtype=torch.float32).reshape(3, 4 * k) / 50.0
    loss = predictor.box_reg_loss(proposals, gts, deltas, classes)
    transform = Box2BoxTransform(weights=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS)
    target = transform.get_deltas(proposals[:2], gts[:2])
    pred = torch.stack([deltas[0, 0:4], deltas[1, 4:8]])  # each RoI's own class's deltas
    expected = balanced_l1_loss(pred, target, 0.5, 1.5, 1.0, reduction="sum") / 3
    assert torch.allclose(loss, expected)
    # Other loss types stay Detectron2's
    predictor.box_reg_loss_type = "smooth_l1"
    assert not torch.allclose(predictor.box_reg_loss(proposals, gts, deltas, classes), loss)


def test_hyperparameters_from_yacs_and_checked():
    cfg = cfg_with(
        "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE",
        "balanced_l1",
        "MODEL.ROI_BOX_HEAD.BALANCED_L1.GAMMA",
        "2.0",
    )
    assert build_model(cfg).roi_heads.box_predictor.balanced_l1 == dict(
        alpha=0.5, gamma=2.0, beta=1.0
    )
    bad = cfg_with(
        "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE",
        "balanced_l1",
        "MODEL.ROI_BOX_HEAD.BALANCED_L1.ALPHA",
        "0.0",
    )
    with pytest.raises(ValueError, match="MODEL.ROI_BOX_HEAD.BALANCED_L1.ALPHA must be"):
        build_model(bad)


def test_default_predictor_unchanged():
    model = build_model(cfg_with())
    assert type(model.roi_heads.box_predictor).__name__ == "FastRCNNOutputLayers"


# ---- Balanced L1 with every sampler and with Cascade R-CNN -----------------------------------

FASTER_YAML = "configs/quick_schedules/faster_rcnn_tiny_FPN_instant_test.yaml"
BALANCED = ("MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE", "balanced_l1")


def faster_cfg(*opts):
    return load_yacs_config(FASTER_YAML, ["MODEL.DEVICE", "cpu", *BALANCED, *opts])


@pytest.mark.parametrize(
    "opts",
    [
        ("MODEL.ROI_HEADS.NAME", "OHEMROIHeads"),
        ("MODEL.ROI_HEADS.NAME", "IoUBalancedROIHeads"),
        sampled_opts("RandomSampling"),
        sampled_opts("OHEMSampling"),
        sampled_opts("IoUBalancedSampling"),
    ],
)
def test_every_sampler_builds_the_balanced_l1_predictor(opts):
    cfg = faster_cfg(*opts)
    predictor = build_model(cfg).roi_heads.box_predictor
    assert isinstance(predictor, BalancedL1FastRCNNOutputLayers)
    assert predictor.box_reg_loss_type == "balanced_l1"
    assert predictor.box2box_transform.weights == tuple(cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS)


def test_cascade_stages_keep_their_transforms():
    cfg = faster_cfg(
        *sampled_opts("OHEMSampling", heads="CascadeROIHeads"),
        "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG",
        "True",
    )
    predictors = build_model(cfg).roi_heads.box_predictor
    assert len(predictors) == 3
    assert all(isinstance(p, BalancedL1FastRCNNOutputLayers) for p in predictors)
    weights = [tuple(w) for w in cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS]
    assert [p.box2box_transform.weights for p in predictors] == weights


def test_ohem_ranks_by_the_balanced_l1_training_loss():
    # Summed over the RoIs and divided by their number, the per-RoI losses OHEM ranks by are
    # the predictor's own training losses, balanced L1 included.
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    from d2_sampling.modeling import fast_rcnn_per_roi_losses

    torch.manual_seed(0)
    predictor = build_model(faster_cfg("MODEL.ROI_HEADS.NAME", "OHEMROIHeads")).roi_heads
    predictor = predictor.box_predictor
    k = predictor.num_classes
    rois = Instances((64, 64))
    rois.proposal_boxes = Boxes(torch.tensor([[0, 0, 10, 10], [5, 5, 25, 15], [0, 0, 4, 4.0]]))
    rois.gt_boxes = Boxes(torch.tensor([[1, 0, 11, 12], [4, 6, 24, 18], [0, 0, 1, 1.0]]))
    rois.gt_classes = torch.tensor([0, 1, k])
    scores = torch.randn(3, k + 1)
    deltas = torch.randn(3, 4 * k) * 0.5  # some |x| beyond beta = 1, some inside
    with EventStorage():
        ref = predictor.losses((scores, deltas), [rois])
    cls, box = fast_rcnn_per_roi_losses(predictor, (scores, deltas), [rois])
    assert torch.allclose(cls.mean(), ref["loss_cls"])
    assert torch.allclose(box.mean(), ref["loss_box_reg"])
    assert box[2] == 0 and box[0] > 0 and box[1] > 0  # background: no box loss
    # ... and they are balanced L1's, not smooth L1's.
    predictor.box_reg_loss_type = "smooth_l1"
    assert not torch.allclose(fast_rcnn_per_roi_losses(predictor, (scores, deltas), [rois])[1], box)


def test_heads_that_cannot_use_it_fail_at_config_time():
    with pytest.raises(ValueError, match='BBOX_REG_LOSS_TYPE "balanced_l1".*StandardROIHeads'):
        faster_cfg("MODEL.ROI_HEADS.NAME", "StandardROIHeads")
    with pytest.raises(ValueError, match="MODEL.ROI_SAMPLER.HEADS 'CascadeROIHeads'"):
        faster_cfg("MODEL.ROI_HEADS.NAME", "CascadeROIHeads")
