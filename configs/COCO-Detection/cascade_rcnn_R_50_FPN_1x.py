# Baseline: Cascade R-CNN R50-FPN 1x (Detectron2's Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml without
# the mask branch): 3 stages at IoU 0.5 / 0.6 / 0.7, random sampling of stage 1's ROIs.
from ..common.coco_rcnn import dataloader, lr_multiplier, model, optimizer, train  # noqa
from ..common.samplers import cascade_roi_heads

cascade_roi_heads(model.roi_heads)
model.proposal_generator.post_nms_topk = (2000, 1000)
