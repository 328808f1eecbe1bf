# The demo on the ImageNet-pretrained backbone (`make demo`): EfficientNet-Lite0-FPN Faster R-CNN
# on the synthetic dataset, CPU, a schedule sized like the from-scratch demo's wall time (~9 min
# on 2 cores): 240 iterations of 4 images. docs/demo.md.
from .faster_rcnn_effnetlite0_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa

train.update(max_iter=240, eval_period=0)
train.checkpointer.period = 500
lr_multiplier.update(steps=[190, 225], warmup_iters=50)
