# IoU-balanced sampling (Libra R-CNN, arXiv 1904.02701): negatives spread over K = 3 IoU bins,
# positives balanced over GT instances (MODEL.IOU_BALANCED defaults). Otherwise the baseline.
from ..common.iou_balanced import iou_balanced_roi_heads
from ..common.synthetic_pretrained import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    rcnn_effnetlite0,
    train,
)

model = rcnn_effnetlite0()
iou_balanced_roi_heads(model.roi_heads)
