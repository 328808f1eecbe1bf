# Detectron2's FCOS on the EfficientNet-Lite0-FPN (ImageNet-pretrained), as
# fcos_effnetlite0_FPN.yaml: towers of 2 convs, the RetinaNet's backbone, images and schedule.
from ..common.fcos import fcos_from_retinanet
from ..common.synthetic_pretrained_dense import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    retinanet_effnetlite0,
    train,
)

model = fcos_from_retinanet(retinanet_effnetlite0(), num_convs=2)
