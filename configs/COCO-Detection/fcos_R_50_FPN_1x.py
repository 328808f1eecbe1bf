# Detectron2's FCOS R50-FPN 1x (its LazyConfig COCO-Detection/fcos_R_50_FPN_1x.py), built as
# ConfigurableFCOS to twin fcos_R_50_FPN_1x.yaml: the baseline of fcos_atss_R_50_FPN_1x.
from ..common.coco_retinanet import dataloader, lr_multiplier, model, optimizer, train  # noqa
from ..common.fcos import fcos_from_retinanet

fcos_from_retinanet(model)
