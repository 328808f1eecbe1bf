# TinyNet-FPN RetinaNet from scratch on the synthetic dataset (baseline of the ATSS variants).
from ..common.synthetic import dataloader, lr_multiplier, optimizer, retinanet_tiny, train  # noqa

optimizer.lr = 0.01
model = retinanet_tiny()
