# The built-in synthetic dataset with an ImageNet-pretrained EfficientNet-Lite0-FPN: the
# LazyConfig twins of configs/Base-Synthetic-RCNN-EffLite0.yaml and
# configs/Base-Synthetic-RetinaNet-EffLite0.yaml (same values). The pretrained models of
# configs/common/pretrained.py on the data, classes, image sizes and batch of
# configs/common/synthetic.py, on its schedule made twice as long.
from .pretrained import (  # noqa: F401
    long_schedule,
    lr_multiplier,
    optimizer,
    rcnn_effnetlite0,
    retinanet_effnetlite0,
    train,
)
from .synthetic import dataloader

dataloader.train.mapper.image_format = "RGB"
dataloader.test.mapper.image_format = "RGB"

long_schedule(train, lr_multiplier)
