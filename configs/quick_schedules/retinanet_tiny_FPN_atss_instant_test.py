# Smoke test: a few iterations on the 16-image synthetic split, evaluated on 8 images.
from ..common.atss import retinanet_atss_from_retinanet
from ..common.synthetic import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    quick_schedule,
    retinanet_tiny,
    train,
)

optimizer.lr = 0.01
model = retinanet_atss_from_retinanet(retinanet_tiny())
quick_schedule(dataloader, train, lr_multiplier, optimizer)
