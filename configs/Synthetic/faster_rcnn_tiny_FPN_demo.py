# The demo as a LazyConfig: TinyNet-FPN Faster R-CNN from scratch on the synthetic dataset.
from ..common.synthetic import dataloader, lr_multiplier, optimizer, rcnn_tiny, train  # noqa

model = rcnn_tiny()
