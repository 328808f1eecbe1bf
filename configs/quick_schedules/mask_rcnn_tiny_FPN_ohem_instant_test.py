# Smoke test of OHEM with a mask head (trained on the selected foreground RoIs), synthetic
# polygons, a few iterations.
from ..common.ohem import add_tiny_mask_head, ohem_roi_heads
from ..common.synthetic import (
    dataloader,
    lr_multiplier,
    optimizer,
    quick_schedule,
    rcnn_tiny,
    train,
)  # noqa

model = add_tiny_mask_head(rcnn_tiny())
ohem_roi_heads(model.roi_heads)
dataloader.train.mapper.use_instance_mask = True
dataloader.evaluator.tasks = ("bbox", "segm")  # as MODEL.MASK_ON in the yaml twin
quick_schedule(dataloader, train, lr_multiplier, optimizer)
