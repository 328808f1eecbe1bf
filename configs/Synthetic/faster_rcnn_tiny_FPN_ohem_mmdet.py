# TinyNet-FPN Faster R-CNN with MMDetection's OHEM recipe: the baseline sampler's size (128 RoIs
# per image here, of <= 500 proposals) and 25% foreground, ranked by classification loss, no NMS.
from ..common.ohem import MMDET_OHEM, ohem_roi_heads
from ..common.synthetic import dataloader, lr_multiplier, optimizer, rcnn_tiny, train  # noqa

model = rcnn_tiny()
ohem_roi_heads(
    model.roi_heads,
    **dict(MMDET_OHEM, ohem_batch_size_per_image=model.roi_heads.batch_size_per_image),
)
