# Baseline of the synthetic-pretrained regime: EfficientNet-Lite0-FPN Faster R-CNN
# (ImageNet-pretrained) on the synthetic dataset, random RoI sampling (Detectron2's: 128 RoIs per
# image, 25% foreground). configs/BCCD/faster_rcnn_effnetlite0_FPN.py on other data.
from ..common.synthetic_pretrained import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    rcnn_effnetlite0,
    train,
)

model = rcnn_effnetlite0()
