# FCOS with ATSS assignment, R50-FPN 1x (ATSS paper, Table 3: 39.2 AP against FCOS's 37.8 / 38.6
# with center sampling): Detectron2's FCOS whose locations are labelled by ATSS on squares of
# 8 x stride (k = 9 per level, threshold mean + std, center inside the GT).
from ..common.coco_retinanet import dataloader, lr_multiplier, model, optimizer, train  # noqa
from ..common.fcos import fcos_atss_from_retinanet

fcos_atss_from_retinanet(model)
