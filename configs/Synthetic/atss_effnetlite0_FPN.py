# The ATSS detector (arXiv 1912.02424): one square anchor of 4 x stride per location, GroupNorm
# towers of 2 convs, centerness, GIoU box loss; as atss_effnetlite0_FPN.yaml.
from ..common.atss import atss_from_retinanet
from ..common.synthetic_pretrained_dense import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    retinanet_effnetlite0,
    train,
)

model = atss_from_retinanet(retinanet_effnetlite0(), anchor_scale=4.0, num_convs=2)
