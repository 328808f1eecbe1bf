# Baseline: EfficientNet-Lite0-FPN Faster R-CNN (ImageNet-pretrained) on BCCD, random RoI
# sampling (Detectron2's: 128 RoIs per image, 25% foreground).
from ..common.bccd import dataloader, lr_multiplier, optimizer, rcnn_effnetlite0, train  # noqa

model = rcnn_effnetlite0()
