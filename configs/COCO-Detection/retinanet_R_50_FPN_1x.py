# Baseline: RetinaNet R50-FPN, 1x schedule (paper: 36.5 AP on COCO val; Detectron2: 37.4).
from ..common.coco_retinanet import dataloader, lr_multiplier, model, optimizer, train  # noqa
