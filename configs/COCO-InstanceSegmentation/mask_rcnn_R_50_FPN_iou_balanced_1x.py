# Mask R-CNN R50-FPN 1x with Libra R-CNN's ROI sampler (MODEL.IOU_BALANCED defaults); the mask
# head trains on the sampled positives. Otherwise Detectron2's COCO-InstanceSegmentation/
# mask_rcnn_R_50_FPN_1x.py.
from detectron2 import model_zoo

from ..common.data import coco_dataloader
from ..common.iou_balanced import iou_balanced_roi_heads

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up.freeze_at = 2
iou_balanced_roi_heads(model.roi_heads)

dataloader = coco_dataloader(tasks=("bbox", "segm"))
optimizer = model_zoo.get_config("common/optim.py").SGD
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_1x
train = model_zoo.get_config("common/train.py").train
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.seed = -1  # SEED: < 0 draws a random seed
