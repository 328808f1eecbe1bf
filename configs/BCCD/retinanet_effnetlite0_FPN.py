# Baseline: EfficientNet-Lite0-FPN RetinaNet (ImageNet-pretrained) on BCCD, IoU-threshold
# anchor assignment (0.4 / 0.5).
from ..common.bccd import dataloader, lr_multiplier, optimizer, retinanet_effnetlite0, train  # noqa

optimizer.lr = 0.005
model = retinanet_effnetlite0()
