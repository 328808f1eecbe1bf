# Baseline: EfficientNet-Lite0-FPN RetinaNet (ImageNet-pretrained) on BCCD, IoU-threshold
# anchor assignment (0.4 / 0.5).
from ..common.bccd_dense import dataloader, lr_multiplier, optimizer, retinanet_effnetlite0, train  # noqa

model = retinanet_effnetlite0()
