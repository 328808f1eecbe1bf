# Smoke test: a few iterations on the 16-image synthetic split, evaluated on 8 images.
from ..common.synthetic import (
    dataloader,
    lr_multiplier,
    optimizer,
    quick_schedule,
    rcnn_tiny,
    train,
)  # noqa

model = rcnn_tiny()
quick_schedule(dataloader, train, lr_multiplier, optimizer)
