# Baseline of the synthetic-pretrained regime's dense detectors: EfficientNet-Lite0-FPN RetinaNet
# (ImageNet-pretrained) on the synthetic dataset, IoU-threshold anchor assignment (0.4 / 0.5).
from ..common.synthetic_pretrained_dense import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    retinanet_effnetlite0,
    train,
)

model = retinanet_effnetlite0()
