# Smoke test of FCOS with ATSS assignment on TinyNet-FPN (P6/P7 from P5): a few iterations on
# the 16-image synthetic split.
from ..common.fcos import fcos_atss_from_retinanet
from ..common.synthetic import (  # noqa
    dataloader,
    lr_multiplier,
    optimizer,
    quick_schedule,
    retinanet_tiny,
    train,
)

optimizer.lr = 0.01
model = fcos_atss_from_retinanet(retinanet_tiny(), anchor_scale=4.0, num_convs=2)
quick_schedule(dataloader, train, lr_multiplier, optimizer)
