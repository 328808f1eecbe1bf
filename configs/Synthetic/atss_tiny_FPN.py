# TinyNet-FPN ATSS from scratch on the synthetic dataset (as atss_tiny_FPN.yaml): anchors of
# 4 x stride (the synthetic configs halve COCO's anchor sizes), towers of 2 convs.
from ..common.atss import atss_from_retinanet
from ..common.synthetic import dataloader, lr_multiplier, optimizer, retinanet_tiny, train  # noqa

optimizer.lr = 0.01
model = atss_from_retinanet(retinanet_tiny(), anchor_scale=4.0, num_convs=2)
