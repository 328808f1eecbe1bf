# RetinaNet with ATSS assignment (arXiv 1912.02424), nothing else changed: the paper's
# "RetinaNet + ATSS" (9 anchors per location, k = 9 x 9 candidates per level).
from ..common.atss import retinanet_atss_from_retinanet
from ..common.synthetic_pretrained_dense import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    retinanet_effnetlite0,
    train,
)

model = retinanet_atss_from_retinanet(retinanet_effnetlite0())
