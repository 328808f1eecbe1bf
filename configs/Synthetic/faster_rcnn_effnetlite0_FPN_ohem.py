# OHEM as in the paper (arXiv 1604.03540): 64 hard RoIs per image ranked by cls + box loss,
# NMS 0.7 among RoIs, no foreground quota (MODEL.OHEM defaults). Otherwise the baseline.
from ..common.ohem import ohem_roi_heads
from ..common.synthetic_pretrained import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    rcnn_effnetlite0,
    train,
)

model = rcnn_effnetlite0()
ohem_roi_heads(model.roi_heads)
