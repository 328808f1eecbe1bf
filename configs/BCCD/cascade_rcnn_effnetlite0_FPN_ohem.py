# Cascade R-CNN with OHEM as in the paper (64 hard RoIs per image ranked by stage 1's cls + box
# loss, NMS 0.7; MODEL.OHEM defaults; docs/samplers.md). Otherwise the Cascade baseline.
from ..common.samplers import ohem_sampling, with_sampler
from .cascade_rcnn_effnetlite0_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa

with_sampler(model.roi_heads, ohem_sampling())
