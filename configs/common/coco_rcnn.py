# Faster R-CNN R50-FPN on COCO, 1x schedule: Detectron2's common pieces, mask branch removed.
from detectron2 import model_zoo

from .data import coco_dataloader

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
model.backbone.bottom_up.freeze_at = 2

dataloader = coco_dataloader()
dataloader.train.mapper.use_instance_mask = False
optimizer = model_zoo.get_config("common/optim.py").SGD
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_1x
train = model_zoo.get_config("common/train.py").train
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.seed = -1  # SEED: < 0 draws a random seed
