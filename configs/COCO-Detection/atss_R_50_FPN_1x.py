# ATSS R50-FPN, 1x schedule, the paper's hyperparameters (paper: 39.3 AP on COCO val).
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from ..common.atss import atss_from_retinanet
from ..common.coco_retinanet import dataloader, lr_multiplier, model, optimizer, train  # noqa

atss_from_retinanet(model)
# The paper trains at a single scale (shorter side 800), not Detectron2's 640-800.
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(800,), sample_style="choice", max_size=1333),
    L(T.RandomFlip)(horizontal=True),
]
