# ResNet-18-FPN Faster R-CNN from scratch at ~320 px on the synthetic dataset (slower than tiny).
from ..common.synthetic import dataloader, lr_multiplier, optimizer, rcnn_r18, train  # noqa

model = rcnn_r18()
