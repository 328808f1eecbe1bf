# RetinaNet R50-FPN 1x (its head, 9 anchors per location, losses) with ATSS assignment only.
from ..common.atss import retinanet_atss_from_retinanet
from ..common.coco_retinanet import dataloader, lr_multiplier, model, optimizer, train  # noqa

retinanet_atss_from_retinanet(model)
