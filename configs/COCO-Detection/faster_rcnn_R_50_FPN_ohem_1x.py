# Faster R-CNN R50-FPN 1x with OHEM as in the paper (arXiv 1604.03540): 64 hard RoIs per image
# ranked by cls + box loss, NMS 0.7 among RoIs, no foreground quota (MODEL.OHEM defaults).
from ..common.coco_rcnn import dataloader, lr_multiplier, model, optimizer, train  # noqa
from ..common.ohem import ohem_roi_heads

ohem_roi_heads(model.roi_heads)
