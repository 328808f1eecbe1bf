"""
Config keys of d2_sampling (yacs).

``add_d2_sampling_config(cfg)`` adds every subtree the project uses; call it on
``detectron2.config.get_cfg()`` before merging a yaml. It never touches Detectron2's global
defaults. Each method has its own ``add_*_config`` so the subtrees can be read one at a time.
Every key mirrors an argument name of the class it configures (``MODEL.ATSS.TOPK`` <-> ``topk``).
"""
from detectron2.config import CfgNode as CN

__all__ = [
    "add_d2_sampling_config",
    "add_dataset_config",
    "add_tiny_backbone_config",
    "add_ohem_config",
    "add_iou_balanced_config",
    "add_atss_config",
]


def add_dataset_config(cfg):
    """
    ``DATASETS.COCO_FORMAT``: COCO-format datasets to register before building anything, as
    ``[[name, json_file, image_root], ...]``. Lets a yaml (or a command-line override) use any
    COCO json + image folder without writing Python.
    """
    cfg.DATASETS.COCO_FORMAT = []


def add_tiny_backbone_config(cfg):
    """Keys of the small from-scratch backbone used by the CPU-sized configs."""
    cfg.MODEL.TINY = CN()
    # Output channels of the four stages (strides 4, 8, 16, 32), named res2..res5.
    cfg.MODEL.TINY.CHANNELS = [32, 64, 128, 256]
    # Channels of the stem (stride 2).
    cfg.MODEL.TINY.STEM_CHANNELS = 16
    # Normalisation of the convolutions: "GN", "BN", "SyncBN" or "" (none).
    cfg.MODEL.TINY.NORM = "GN"


def add_ohem_config(cfg):
    """``MODEL.OHEM``: online hard example mining (Shrivastava et al., arXiv 1604.03540)."""
    cfg.MODEL.OHEM = CN()
    # Hard RoIs kept per image (the paper's B/N).
    cfg.MODEL.OHEM.BATCH_SIZE_PER_IMAGE = 128
    # Loss that ranks RoIs: "cls+box" (paper) or "cls" (MMDetection).
    cfg.MODEL.OHEM.LOSS = "cls+box"
    # NMS IoU threshold among RoIs, loss as score (paper: 0.7); <= 0 or >= 1 disables NMS.
    cfg.MODEL.OHEM.NMS_THRESH = 0.7
    # Foreground quota among the kept RoIs; negative = no quota (paper). MMDetection: 0.25.
    cfg.MODEL.OHEM.POSITIVE_FRACTION = -1.0
    # Cap on the RoI pool scored per image (highest-objectness proposals first); <= 0: no cap.
    cfg.MODEL.OHEM.MAX_POOL_SIZE = -1


def add_iou_balanced_config(cfg):
    """``MODEL.IOU_BALANCED``: IoU-balanced sampling (Libra R-CNN, arXiv 1904.02701)."""
    cfg.MODEL.IOU_BALANCED = CN()
    # K, the number of equal-width IoU bins the negatives are spread over (paper: 3).
    cfg.MODEL.IOU_BALANCED.NUM_BINS = 3
    # Negatives below this IoU form a separate "floor" set; negative = no floor set.
    cfg.MODEL.IOU_BALANCED.FLOOR_THR = -1.0
    # Fraction of the negative quota drawn from the floor set.
    cfg.MODEL.IOU_BALANCED.FLOOR_FRACTION = 0.0
    # Spread positives evenly over ground-truth instances (Libra's InstanceBalancedPosSampler).
    cfg.MODEL.IOU_BALANCED.INSTANCE_BALANCED_POSITIVES = True


def add_atss_config(cfg):
    """``MODEL.ATSS``: adaptive training sample selection (Zhang et al., arXiv 1912.02424)."""
    cfg.MODEL.ATSS = CN()
    # k: candidate anchors per GT per pyramid level, nearest centers first (paper: 9).
    cfg.MODEL.ATSS.TOPK = 9
    # An anchor's center must lie inside the GT by more than this many pixels on every side.
    cfg.MODEL.ATSS.CENTER_MARGIN = 0.01
    # Focal loss (alpha, gamma) of the classification branch.
    cfg.MODEL.ATSS.FOCAL_LOSS_ALPHA = 0.25
    cfg.MODEL.ATSS.FOCAL_LOSS_GAMMA = 2.0
    # Weight of the GIoU box regression loss (paper: 2.0).
    cfg.MODEL.ATSS.BOX_LOSS_WEIGHT = 2.0
    # Number of convs in each head tower and their normalisation (paper: 4, GroupNorm).
    cfg.MODEL.ATSS.NUM_CONVS = 4
    cfg.MODEL.ATSS.NORM = "GN"


def add_d2_sampling_config(cfg):
    """
    Add every d2_sampling key to ``cfg`` (a Detectron2 ``CfgNode`` from ``get_cfg()``).

    Returns:
        CfgNode: the same ``cfg``, for chaining.
    """
    add_dataset_config(cfg)
    add_tiny_backbone_config(cfg)
    add_ohem_config(cfg)
    add_iou_balanced_config(cfg)
    add_atss_config(cfg)
    return cfg
