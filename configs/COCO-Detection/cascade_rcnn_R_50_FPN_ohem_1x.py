# Cascade R-CNN R50-FPN 1x with OHEM as in the paper (arXiv 1604.03540) where Cascade samples:
# the RoIs are ranked by stage 1's cls + box loss, 64 hard RoIs per image after NMS 0.7; stages 2
# and 3 train on those RoIs regressed (docs/samplers.md).
from ..common.samplers import ohem_sampling, with_sampler
from .cascade_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa

with_sampler(model.roi_heads, ohem_sampling())
