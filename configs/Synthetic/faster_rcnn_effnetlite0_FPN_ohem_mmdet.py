# OHEM with MMDetection's recipe: the baseline's 128 RoIs per image (of <= 500 proposals; 512
# would select the whole pool and mine nothing), 25% foreground quota, ranked by the
# classification loss only, no NMS.
from ..common.ohem import MMDET_OHEM, ohem_roi_heads
from ..common.synthetic_pretrained import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    rcnn_effnetlite0,
    train,
)

model = rcnn_effnetlite0()
ohem_roi_heads(
    model.roi_heads,
    **dict(MMDET_OHEM, ohem_batch_size_per_image=model.roi_heads.batch_size_per_image),
)
