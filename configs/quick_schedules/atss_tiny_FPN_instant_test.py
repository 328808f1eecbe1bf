# Smoke test: a few iterations on the 16-image synthetic split, evaluated on 8 images.
from ..common.atss import atss_from_retinanet
from ..common.synthetic import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    quick_schedule,
    retinanet_tiny,
    train,
)

optimizer.lr = 0.01
model = atss_from_retinanet(retinanet_tiny(), anchor_scale=4.0, num_convs=2)
quick_schedule(dataloader, train, lr_multiplier, optimizer)
