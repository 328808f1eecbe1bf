# Faster R-CNN R50-FPN 1x with MMDetection's OHEM (faster-rcnn_r50_fpn_ohem_1x_coco): 512 RoIs
# per image, at most 25% foreground, ranked by classification loss, no NMS.
from ..common.coco_rcnn import dataloader, lr_multiplier, model, optimizer, train  # noqa
from ..common.ohem import MMDET_OHEM, ohem_roi_heads

ohem_roi_heads(model.roi_heads, **MMDET_OHEM)
