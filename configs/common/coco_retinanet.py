# RetinaNet R50-FPN on COCO, 1x schedule (as Detectron2's COCO-Detection/retinanet_R_50_FPN_1x.py).
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from d2_sampling.solver import multistep_lr_multiplier

from .data import coco_dataloader

model = model_zoo.get_config("common/models/retinanet.py").model
model.backbone.bottom_up.freeze_at = 2

dataloader = coco_dataloader()
dataloader.train.mapper.use_instance_mask = False
optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.01
# As SOLVER.STEPS / WARMUP_ITERS of the yaml twin (Detectron2's 1x: 60k / 80k of 90k iterations,
# 1000 warm-up), in iterations, so `train.max_iter=N` keeps them where `SOLVER.MAX_ITER N` does.
lr_multiplier = L(multistep_lr_multiplier)(
    max_iter="${train.max_iter}", steps=[60000, 80000], warmup_iters=1000, warmup_factor=0.001
)
train = model_zoo.get_config("common/train.py").train
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.seed = -1  # SEED: < 0 draws a random seed
