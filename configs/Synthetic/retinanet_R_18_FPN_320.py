# ResNet-18-FPN RetinaNet from scratch at ~320 px on the synthetic dataset.
from ..common.synthetic import dataloader, lr_multiplier, optimizer, retinanet_r18, train  # noqa

optimizer.lr = 0.01
model = retinanet_r18()
