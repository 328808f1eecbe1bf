# Baseline: EfficientNet-Lite0-FPN Cascade R-CNN (ImageNet-pretrained) on BCCD: the Faster R-CNN
# baseline's heads in 3 stages at IoU 0.5 / 0.6 / 0.7, class-agnostic boxes, random sampling of
# stage 1's RoIs (128 per image, 25% foreground).
from ..common.bccd import dataloader, lr_multiplier, optimizer, rcnn_effnetlite0, train  # noqa
from ..common.samplers import cascade_roi_heads

model = rcnn_effnetlite0()
cascade_roi_heads(model.roi_heads)
