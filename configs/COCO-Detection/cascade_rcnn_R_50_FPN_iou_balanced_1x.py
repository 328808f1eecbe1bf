# Cascade R-CNN R50-FPN 1x with Libra R-CNN's ROI sampler (arXiv 1904.02701) where Cascade
# samples, before stage 1: 512 ROIs per image, 25% positives spread over GT instances, negatives
# over K = 3 IoU bins. Stages 2 and 3 relabel stage 1's regressed boxes, as always
# (docs/samplers.md).
from ..common.samplers import iou_balanced_sampling, with_sampler
from .cascade_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa

model.roi_heads.update(batch_size_per_image=512, positive_fraction=0.25)
with_sampler(model.roi_heads, iou_balanced_sampling())
