# FCOS with ATSS assignment on the EfficientNet-Lite0-FPN, as fcos_atss_effnetlite0_FPN.yaml:
# squares of 4 x stride for the assignment, otherwise fcos_effnetlite0_FPN.
from ..common.fcos import fcos_atss_from_retinanet
from ..common.synthetic_pretrained_dense import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    retinanet_effnetlite0,
    train,
)

model = fcos_atss_from_retinanet(retinanet_effnetlite0(), anchor_scale=4.0, num_convs=2)
