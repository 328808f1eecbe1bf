# TinyNet-FPN Faster R-CNN with OHEM as in the paper (arXiv 1604.03540): 64 hard RoIs per
# image ranked by cls + box loss, NMS 0.7 among RoIs, no foreground quota (MODEL.OHEM defaults).
from ..common.ohem import ohem_roi_heads
from ..common.synthetic import dataloader, lr_multiplier, optimizer, rcnn_tiny, train  # noqa

model = rcnn_tiny()
ohem_roi_heads(model.roi_heads)
