# Libra R-CNN on BCCD, all three parts: IoU-balanced sampling, the balanced feature pyramid and
# the balanced L1 box loss (alpha 0.5, gamma 1.5, beta 1). Otherwise the BCCD baseline.
from ..common.libra import balanced_l1_box_predictor
from .libra_faster_rcnn_effnetlite0_FPN_sampler_bfp import (  # noqa
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

balanced_l1_box_predictor(model.roi_heads.box_predictor)
