# BCCD with an ImageNet-pretrained EfficientNet-Lite0-FPN: the LazyConfig twins of
# configs/Base-BCCD-RCNN.yaml and configs/Base-BCCD-RetinaNet.yaml (same values). The models are
# those of configs/common/pretrained.py (the synthetic configs' CPU-sized FPN, RPN and ROI
# sizes on the pretrained backbone), with BCCD's 3 classes; the same learning rates.
# The dense detectors (RetinaNet, ATSS, FCOS) train twice as long: common/bccd_dense.py.
import os

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from d2_sampling.data import register_voc_format

from .data import coco_dataloader
from .pretrained import lr_multiplier, optimizer, train  # noqa: F401
from .pretrained import rcnn_effnetlite0 as _rcnn
from .pretrained import retinanet_effnetlite0 as _retinanet

# Base-BCCD-RCNN.yaml's schedule: 600 iterations, 100 of warm-up, decays at 480 and 560 (the
# pretrained synthetic detectors train twice as long; on BCCD the R-CNN AP50 is flat by 600,
# docs/bccd.md).
train.max_iter = 600
lr_multiplier.update(steps=[480, 560], warmup_iters=100)

# The published train / val / test split, beside the checkout (../../shared/data/bccd).
BCCD_DIR = os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "bccd")
)
for _split in ("train", "val", "test"):
    register_voc_format(f"bccd_{_split}", BCCD_DIR, _split)
NUM_CLASSES = 3

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


def rcnn_effnetlite0():
    """EfficientNet-Lite0-FPN Faster R-CNN, as configs/BCCD/faster_rcnn_effnetlite0_FPN.yaml."""
    model = _rcnn()
    model.roi_heads.num_classes = NUM_CLASSES
    return model


def retinanet_effnetlite0():
    """EfficientNet-Lite0-FPN RetinaNet (P3-P7, P6/P7 from P5), as retinanet_effnetlite0_FPN."""
    model = _retinanet()
    model.num_classes = NUM_CLASSES
    return model
