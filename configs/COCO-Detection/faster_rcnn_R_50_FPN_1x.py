# Baseline: Faster R-CNN R50-FPN, 1x schedule (90k iterations at 16 images), random sampling.
from ..common.coco_rcnn import dataloader, lr_multiplier, model, optimizer, train  # noqa
