# Smoke test of the whole Libra R-CNN (IoU-balanced sampling, balanced feature pyramid over
# TinyNet-FPN, balanced L1 loss): a few iterations on the 16-image split.
from ..common.libra import balanced_feature_pyramid, balanced_l1_box_predictor
from .faster_rcnn_tiny_FPN_iou_balanced_instant_test import (  # noqa
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.backbone = balanced_feature_pyramid(model.backbone)
balanced_l1_box_predictor(model.roi_heads.box_predictor)
