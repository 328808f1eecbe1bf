# Libra R-CNN ablation on BCCD, step 2 of 3: IoU-balanced sampling
# (faster_rcnn_effnetlite0_FPN_iou_balanced, step 1) plus the balanced feature pyramid over the
# EfficientNet-Lite0 FPN's P2-P6, integrated at P4, non-local refinement.
from ..common.bccd import dataloader, lr_multiplier, optimizer, rcnn_effnetlite0, train  # noqa
from ..common.iou_balanced import iou_balanced_roi_heads
from ..common.libra import balanced_feature_pyramid

model = rcnn_effnetlite0()
iou_balanced_roi_heads(model.roi_heads)
model.backbone = balanced_feature_pyramid(model.backbone)
