# Smoke test of IoU-balanced sampling of the RPN's training anchors (Libra R-CNN's sampler,
# MODEL.RPN.IOU_BALANCED defaults; the ROI head samples uniformly): a few iterations on the
# 16-image split.
from ..common.iou_balanced_rpn import iou_balanced_rpn
from .faster_rcnn_tiny_FPN_instant_test import (  # noqa
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

iou_balanced_rpn(model.proposal_generator)
