# Smoke test of OHEM (paper settings): a few iterations on the 16-image synthetic split.
from ..common.ohem import ohem_roi_heads
from ..common.synthetic import (
    dataloader,
    lr_multiplier,
    optimizer,
    quick_schedule,
    rcnn_tiny,
    train,
)  # noqa

model = rcnn_tiny()
ohem_roi_heads(model.roi_heads)
quick_schedule(dataloader, train, lr_multiplier, optimizer)
