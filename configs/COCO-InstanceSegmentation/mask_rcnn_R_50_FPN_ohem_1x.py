# Mask R-CNN R50-FPN 1x with OHEM as in the paper (MODEL.OHEM defaults); the mask head trains
# on the selected foreground RoIs. Otherwise Detectron2's COCO-InstanceSegmentation/
# mask_rcnn_R_50_FPN_1x.py.
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from d2_sampling.solver import multistep_lr_multiplier

from ..common.data import coco_dataloader
from ..common.ohem import ohem_roi_heads

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up.freeze_at = 2
ohem_roi_heads(model.roi_heads)

dataloader = coco_dataloader(tasks=("bbox", "segm"))
optimizer = model_zoo.get_config("common/optim.py").SGD
# As SOLVER.STEPS / WARMUP_ITERS of the yaml twin (Detectron2's 1x: 60k / 80k of 90k iterations,
# 1000 warm-up), in iterations, so `train.max_iter=N` keeps them where `SOLVER.MAX_ITER N` does.
lr_multiplier = L(multistep_lr_multiplier)(
    max_iter="${train.max_iter}", steps=[60000, 80000], warmup_iters=1000, warmup_factor=0.001
)
train = model_zoo.get_config("common/train.py").train
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.seed = -1  # SEED: < 0 draws a random seed
