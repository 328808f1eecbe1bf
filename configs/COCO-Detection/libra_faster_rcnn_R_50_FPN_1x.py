# Libra R-CNN (arXiv 1904.02701), all three parts: IoU-balanced sampling, the balanced feature
# pyramid and the balanced L1 box loss (alpha 0.5, gamma 1.5, beta 1). Paper: 38.5 AP (COCO val,
# Table 5, against 35.9 for its Faster R-CNN); MMDetection's libra_faster_rcnn_r50_fpn_1x:
# 38.3 (against 37.4). Differences from MMDetection's config: docs/libra_rcnn.md.
from ..common.libra import balanced_l1_box_predictor
from .libra_faster_rcnn_R_50_FPN_sampler_bfp_1x import (  # noqa
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

balanced_l1_box_predictor(model.roi_heads.box_predictor)
