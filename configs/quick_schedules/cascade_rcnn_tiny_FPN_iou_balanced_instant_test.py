# Smoke test of the sampler as a choice: TinyNet-FPN Cascade R-CNN (3 stages, IoU 0.5 / 0.6 / 0.7)
# whose stage-1 ROIs are chosen
# by IoU-balanced sampling (Libra R-CNN; MODEL.IOU_BALANCED defaults);
# a few iterations on the 16-image synthetic split.
from ..common.samplers import cascade_roi_heads, iou_balanced_sampling, with_sampler
from .faster_rcnn_tiny_FPN_instant_test import (  # noqa
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

cascade_roi_heads(model.roi_heads)
with_sampler(model.roi_heads, iou_balanced_sampling())
