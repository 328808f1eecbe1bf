# TinyNet-FPN RetinaNet (9 anchors per location, its head and losses) with ATSS assignment only.
from ..common.atss import retinanet_atss_from_retinanet
from ..common.synthetic import dataloader, lr_multiplier, optimizer, retinanet_tiny, train  # noqa

optimizer.lr = 0.01
model = retinanet_atss_from_retinanet(retinanet_tiny())
