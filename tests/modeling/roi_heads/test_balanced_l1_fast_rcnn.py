"""The Fast R-CNN predictor with Libra R-CNN's balanced L1 box loss, and its yacs switch."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform

from d2_sampling.engine.setup import load_yacs_config
from d2_sampling.modeling import BalancedL1FastRCNNOutputLayers, balanced_l1_loss

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
