# Libra R-CNN ablation, step 2 of 3 (paper Table 5: 36.8 -> 37.7 AP): IoU-balanced sampling
# (faster_rcnn_R_50_FPN_iou_balanced_1x, step 1) plus the balanced feature pyramid over P2-P6,
# integrated at P4 and refined by a non-local block. Step 3: libra_faster_rcnn_R_50_FPN_1x.
from ..common.coco_rcnn import dataloader, lr_multiplier, model, optimizer, train  # noqa
from ..common.iou_balanced import iou_balanced_roi_heads
from ..common.libra import balanced_feature_pyramid

model.roi_heads.update(batch_size_per_image=512, positive_fraction=0.25)
iou_balanced_roi_heads(model.roi_heads)
model.backbone = balanced_feature_pyramid(model.backbone)
