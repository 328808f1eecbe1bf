# Cascade R-CNN with IoU-balanced sampling (Libra R-CNN) of stage 1's RoIs, where Cascade samples
# (MODEL.IOU_BALANCED defaults; docs/samplers.md). Otherwise the Cascade baseline.
from ..common.samplers import iou_balanced_sampling, with_sampler
from .cascade_rcnn_effnetlite0_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa

with_sampler(model.roi_heads, iou_balanced_sampling())
