# TinyNet-FPN Faster R-CNN with MMDetection's OHEM: 512 RoIs per image, at most 25% foreground,
# ranked by classification loss, no NMS.
from ..common.ohem import MMDET_OHEM, ohem_roi_heads
from ..common.synthetic import dataloader, lr_multiplier, optimizer, rcnn_tiny, train  # noqa

model = rcnn_tiny()
ohem_roi_heads(model.roi_heads, **MMDET_OHEM)
