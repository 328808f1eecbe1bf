# Smoke test of IoU-balanced sampling (Libra settings): a few iterations on the 16-image split.
from ..common.iou_balanced import iou_balanced_roi_heads
from ..common.synthetic import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    quick_schedule,
    rcnn_tiny,
    train,
)

model = rcnn_tiny()
iou_balanced_roi_heads(model.roi_heads)
quick_schedule(dataloader, train, lr_multiplier, optimizer)
