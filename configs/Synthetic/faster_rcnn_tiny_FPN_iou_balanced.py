# TinyNet-FPN Faster R-CNN with Libra R-CNN's ROI sampler (arXiv 1904.02701): positives spread
# over GT instances, negatives over K = 3 IoU bins (MODEL.IOU_BALANCED defaults).
from ..common.iou_balanced import iou_balanced_roi_heads
from ..common.synthetic import dataloader, lr_multiplier, optimizer, rcnn_tiny, train  # noqa

model = rcnn_tiny()
iou_balanced_roi_heads(model.roi_heads)
