# Baseline: EfficientNet-Lite0-FPN RetinaNet (ImageNet-pretrained) on BCCD, IoU-threshold
# anchor assignment (0.4 / 0.5).
from ..common.bccd import (  # noqa
    dataloader,
    dense_schedule,
    lr_multiplier,
    optimizer,
    retinanet_effnetlite0,
    train,
)

dense_schedule()
model = retinanet_effnetlite0()
