# Faster R-CNN R50-FPN 1x with Libra R-CNN's ROI sampler (arXiv 1904.02701): 512 ROIs per image,
# 25% positives spread evenly over GT instances, negatives spread over K = 3 IoU bins.
# Only the sampler: Libra's balanced feature pyramid and balanced L1 loss are not included.
from ..common.coco_rcnn import dataloader, lr_multiplier, model, optimizer, train  # noqa
from ..common.iou_balanced import iou_balanced_roi_heads

model.roi_heads.update(batch_size_per_image=512, positive_fraction=0.25)
iou_balanced_roi_heads(model.roi_heads)
