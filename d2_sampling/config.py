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
    "add_efficientnet_config",
    "add_ohem_config",
    "add_iou_balanced_config",
    "add_atss_config",
    "add_fcos_config",
    "add_libra_config",
    "add_roi_sampler_config",
    "add_iou_balanced_rpn_config",
]


def add_dataset_config(cfg):
    """
    ``DATASETS.COCO_FORMAT`` / ``DATASETS.VOC_FORMAT``: COCO-format and Pascal VOC-format
    datasets to register before building anything, so that a yaml (or a command-line override)
    uses any COCO json + image folder or VOC folder without writing Python. Relative paths
    resolve from the folder of the yaml that sets the key (from the working directory for a
    command-line override). ``TEST.EVALUATOR`` picks the metric of evaluation. See
    docs/datasets.md.
    """
    # COCO-format datasets to register: [[name, json_file, image_root], ...].
    cfg.DATASETS.COCO_FORMAT = []
    # Pascal VOC-format datasets to register: [[name, dir, split], ...], or
    # [name, dir, split, [class, ...]]; classes default to dir/classes.txt, else the sorted
    # names in dir/Annotations.
    cfg.DATASETS.VOC_FORMAT = []
    # Evaluator of the test datasets: "coco" (COCO AP) or "voc" (Pascal VOC AP, boxes).
    cfg.TEST.EVALUATOR = "coco"


def add_tiny_backbone_config(cfg):
    """Keys of the small from-scratch backbone used by the CPU-sized configs."""
    cfg.MODEL.TINY = CN()
    # Output channels of the four stages (strides 4, 8, 16, 32), named res2..res5.
    cfg.MODEL.TINY.CHANNELS = [32, 64, 128, 256]
    # Channels of the stem (stride 2).
    cfg.MODEL.TINY.STEM_CHANNELS = 16
    # Normalisation of the convolutions: "GN", "BN", "SyncBN" or "" (none).
    cfg.MODEL.TINY.NORM = "GN"


def add_efficientnet_config(cfg):
    """
    ``MODEL.EFFICIENTNET``: EfficientNet-Lite backbones (Tan & Le, arXiv 1905.11946; the
    authors' Lite variants), used by ``MODEL.BACKBONE.NAME: "build_efficientnet_lite_fpn_backbone"``
    (P2-P6) or ``"build_efficientnet_lite_retinanet_fpn_backbone"`` (P3-P7). Freezing is
    ``MODEL.BACKBONE.FREEZE_AT`` (1: stem, 2: + res2, ...); ImageNet weights:
    ``MODEL.WEIGHTS "efficientnet://lite0"`` with RGB input, ``PIXEL_MEAN [127.0] * 3``,
    ``PIXEL_STD [128.0] * 3`` (docs/efficientnet_lite.md). Keys mirror ``EfficientNetLite``.
    """
    cfg.MODEL.EFFICIENTNET = CN()
    # Variant, "efficientnet-lite0" .. "efficientnet-lite4" (width / depth coefficients).
    cfg.MODEL.EFFICIENTNET.NAME = "efficientnet-lite0"
    # Outputs among "stem" (stride 2), "res2" .. "res5" (strides 4, 8, 16, 32).
    cfg.MODEL.EFFICIENTNET.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    # Normalisation: "FrozenBN" (fine-tuning, as MODEL.RESNETS.NORM), "BN" or "SyncBN".
    cfg.MODEL.EFFICIENTNET.NORM = "FrozenBN"
    # Drop-connect (stochastic depth) rate of the last block, in [0, 1); 0 disables it
    # (reference ImageNet training: 0.2).
    cfg.MODEL.EFFICIENTNET.DROP_CONNECT_RATE = 0.0


def add_ohem_config(cfg):
    """
    ``MODEL.OHEM``: online hard example mining (Shrivastava et al., arXiv 1604.03540), used by
    ``MODEL.ROI_HEADS.NAME: "OHEMROIHeads"``. Defaults are the paper's; MMDetection's OHEM is
    ``BATCH_SIZE_PER_IMAGE 512, LOSS "cls", NMS_THRESH -1.0, POSITIVE_FRACTION 0.25``. With
    OHEM, ``MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE`` / ``POSITIVE_FRACTION`` are not used.
    Each key mirrors an argument of ``OHEMROIHeads``: ``MODEL.OHEM.X`` <-> ``ohem_x``.
    """
    cfg.MODEL.OHEM = CN()
    # B/N: hard RoIs kept per image (paper: B = 128 RoIs over N = 2 images -> 64). > 0.
    cfg.MODEL.OHEM.BATCH_SIZE_PER_IMAGE = 64
    # Loss that ranks RoIs: "cls+box" (paper: the full RoI loss L_cls + L_loc) or "cls"
    # (MMDetection: classification loss only).
    cfg.MODEL.OHEM.LOSS = "cls+box"
    # NMS IoU threshold among the RoIs, loss as score (paper: 0.7); <= 0 or >= 1 disables NMS.
    cfg.MODEL.OHEM.NMS_THRESH = 0.7
    # Foreground quota among the kept RoIs, in [0, 1]; negative = no quota (paper: none, the
    # fg/bg ratio heuristic is removed). MMDetection: 0.25.
    cfg.MODEL.OHEM.POSITIVE_FRACTION = -1.0
    # Cap on the RoI pool scored per image (highest objectness first, so ground-truth boxes
    # appended as proposals always stay); -1 = no cap (paper: all RoIs). Else >= the batch.
    cfg.MODEL.OHEM.MAX_POOL_SIZE = -1


def add_iou_balanced_config(cfg):
    """
    ``MODEL.IOU_BALANCED``: IoU-balanced sampling (Libra R-CNN, Pang et al., arXiv 1904.02701),
    used by ``MODEL.ROI_HEADS.NAME: "IoUBalancedROIHeads"``. Defaults are Libra R-CNN's sampler
    settings (its released config: K = 3, no floor set, instance-balanced positives); the ROI
    batch size and positive fraction stay under ``MODEL.ROI_HEADS`` (paper: 512, 0.25).
    """
    cfg.MODEL.IOU_BALANCED = CN()
    # K, the number of equal-width IoU bins the negatives are spread over (paper: K = 3).
    cfg.MODEL.IOU_BALANCED.NUM_BINS = 3
    # Negatives with IoU below this form a "floor" set sampled apart; < 0 disables it (not in
    # the paper; MMDetection's floor_thr, -1 in Libra R-CNN's config). Must be < 1.
    cfg.MODEL.IOU_BALANCED.FLOOR_THR = -1.0
    # Share of the negative quota drawn from the floor set, in [0, 1] (MMDetection's
    # floor_fraction; 0 in Libra R-CNN's config).
    cfg.MODEL.IOU_BALANCED.FLOOR_FRACTION = 0.0
    # Spread the positives evenly over GT instances (Libra R-CNN's instance-balanced positive
    # sampling, MMDetection's InstanceBalancedPosSampler); False: uniform, as Detectron2.
    cfg.MODEL.IOU_BALANCED.INSTANCE_BALANCED_POSITIVES = True


def add_atss_config(cfg):
    """
    ``MODEL.ATSS``: adaptive training sample selection (Zhang et al., arXiv 1912.02424).

    Used by the ``ATSS`` and ``RetinaNetATSS`` meta-architectures. Everything they share with
    RetinaNet is read from ``MODEL.RETINANET`` (NUM_CLASSES, IN_FEATURES, PRIOR_PROB,
    FOCAL_LOSS_ALPHA/GAMMA, SCORE_THRESH_TEST, TOPK_CANDIDATES_TEST, NMS_THRESH_TEST) and the
    anchors from ``MODEL.ANCHOR_GENERATOR`` (configs/Base-ATSS.yaml sets one 8S anchor).
    """
    cfg.MODEL.ATSS = CN()
    # k: candidate anchors per GT per pyramid level, nearest centers first (paper: 9); times the
    # anchors per location when there are several (the authors' rule).
    cfg.MODEL.ATSS.TOPK = 9
    # A positive's center must lie inside its GT by more than this many pixels on every side
    # (the paper's "center in g" test; authors' code: 0.01).
    cfg.MODEL.ATSS.CENTER_MARGIN = 0.01
    # lambda, weight of the centerness-weighted GIoU box loss (paper / authors: 2.0). ATSS only.
    cfg.MODEL.ATSS.BOX_LOSS_WEIGHT = 2.0
    # Weights (wx, wy, ww, wh) of the box delta coder (authors: 10, 10, 5, 5). ATSS only.
    cfg.MODEL.ATSS.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
    # Convs in each head tower and their normalisation (paper: 4, GroupNorm). ATSS only.
    cfg.MODEL.ATSS.NUM_CONVS = 4
    cfg.MODEL.ATSS.NORM = "GN"


def add_fcos_config(cfg):
    """
    ``MODEL.FCOS``: Detectron2's FCOS in yacs form (``META_ARCHITECTURE: "ConfigurableFCOS"``)
    and FCOS with ATSS assignment (``"FCOSATSS"``, which also reads ``MODEL.ATSS.TOPK`` /
    ``CENTER_MARGIN``). Everything FCOS shares with RetinaNet is read from ``MODEL.RETINANET``
    (NUM_CLASSES, IN_FEATURES, PRIOR_PROB, FOCAL_LOSS_ALPHA/GAMMA, SCORE_THRESH_TEST,
    TOPK_CANDIDATES_TEST, NMS_THRESH_TEST; configs/Base-FCOS.yaml sets FCOS's values).
    """
    cfg.MODEL.FCOS = CN()
    # FCOS's center sampling: a location is positive within this many strides of a GT's
    # center (Detectron2's FCOS: 1.5). Unused by FCOSATSS.
    cfg.MODEL.FCOS.CENTER_SAMPLING_RADIUS = 1.5
    # Convs in each head tower and their normalisation (Detectron2's FCOS: 4, GroupNorm).
    cfg.MODEL.FCOS.NUM_CONVS = 4
    cfg.MODEL.FCOS.NORM = "GN"
    # FCOSATSS: the side of each location's square anchor for the assignment, in strides
    # (the ATSS paper: 8).
    cfg.MODEL.FCOS.ATSS_ANCHOR_SCALE = 8.0


def add_libra_config(cfg):
    """
    ``MODEL.BFP`` (the balanced feature pyramid, ``MODEL.BACKBONE.NAME: "build_bfp_backbone"``)
    and ``MODEL.ROI_BOX_HEAD.BALANCED_L1`` (the balanced L1 box loss,
    ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE: "balanced_l1"``): the two other parts of Libra
    R-CNN (Pang et al., arXiv 1904.02701). Defaults are the paper's / MMDetection's.
    """
    cfg.MODEL.BFP = CN()
    # The backbone builder whose pyramid is balanced (a registered name).
    cfg.MODEL.BFP.BACKBONE = "build_resnet_fpn_backbone"
    # The levels balanced, finest first; empty: all of that backbone's outputs.
    cfg.MODEL.BFP.IN_FEATURES = []
    # Index (into those levels) of the level everything is resized to (Libra: 2, P4 of P2-P6).
    cfg.MODEL.BFP.REFINE_LEVEL = 2
    # "non_local" (Libra), "conv" (a 3x3 convolution) or "none".
    cfg.MODEL.BFP.REFINE_TYPE = "non_local"
    cfg.MODEL.ROI_BOX_HEAD.BALANCED_L1 = CN()
    # alpha > 0: smaller gives the inliers (|x| < beta) more gradient (Libra: 0.5).
    cfg.MODEL.ROI_BOX_HEAD.BALANCED_L1.ALPHA = 0.5
    # gamma > 0: the gradient's bound beyond beta (Libra: 1.5).
    cfg.MODEL.ROI_BOX_HEAD.BALANCED_L1.GAMMA = 1.5
    # beta > 0: where the two pieces of the loss meet (Libra: 1.0).
    cfg.MODEL.ROI_BOX_HEAD.BALANCED_L1.BETA = 1.0


def add_roi_sampler_config(cfg):
    """
    ``MODEL.ROI_SAMPLER``: the training-ROI sampler as a choice, for any ``StandardROIHeads``
    subclass (Cascade R-CNN included): ``MODEL.ROI_HEADS.NAME: "SampledROIHeads"`` builds the
    heads named by ``MODEL.ROI_SAMPLER.HEADS`` and gives them the sampler named by
    ``MODEL.ROI_SAMPLER.NAME``, with its settings from ``MODEL.IOU_BALANCED`` / ``MODEL.OHEM``.
    docs/samplers.md.
    """
    cfg.MODEL.ROI_SAMPLER = CN()
    # A name in ROI_SAMPLER_REGISTRY: "RandomSampling" (Detectron2's own), "IoUBalancedSampling"
    # (Libra R-CNN) or "OHEMSampling" (online hard example mining).
    cfg.MODEL.ROI_SAMPLER.NAME = "RandomSampling"
    # The ROI heads that get the sampler: a name in ROI_HEADS_REGISTRY ("StandardROIHeads",
    # "CascadeROIHeads", or a user's StandardROIHeads subclass).
    cfg.MODEL.ROI_SAMPLER.HEADS = "StandardROIHeads"


def add_iou_balanced_rpn_config(cfg):
    """
    ``MODEL.RPN.IOU_BALANCED``: IoU-balanced sampling of the RPN's training anchors,
    ``MODEL.PROPOSAL_GENERATOR.NAME: "IoUBalancedRPN"`` (not in Libra R-CNN's released config,
    which balances only the ROI head). The same settings as ``MODEL.IOU_BALANCED``, for the
    anchors; the anchor batch and positive fraction stay ``MODEL.RPN.BATCH_SIZE_PER_IMAGE`` /
    ``POSITIVE_FRACTION``.
    """
    cfg.MODEL.RPN.IOU_BALANCED = CN()
    # K, equal-width IoU bins over [max(FLOOR_THR, 0), h], h the highest IoU among an image's
    # negative anchors (all below MODEL.RPN.IOU_THRESHOLDS[0]).
    cfg.MODEL.RPN.IOU_BALANCED.NUM_BINS = 3
    # As MODEL.IOU_BALANCED.FLOOR_THR / FLOOR_FRACTION: < 0 disables the floor set.
    cfg.MODEL.RPN.IOU_BALANCED.FLOOR_THR = -1.0
    cfg.MODEL.RPN.IOU_BALANCED.FLOOR_FRACTION = 0.0
    # Spread the positive anchors evenly over the GT instances (False: uniform, Detectron2's).
    cfg.MODEL.RPN.IOU_BALANCED.INSTANCE_BALANCED_POSITIVES = True


def add_d2_sampling_config(cfg):
    """
    Add every d2_sampling key to ``cfg`` (a Detectron2 ``CfgNode`` from ``get_cfg()``).

    Returns:
        CfgNode: the same ``cfg``, for chaining.
    """
    add_dataset_config(cfg)
    add_tiny_backbone_config(cfg)
    add_efficientnet_config(cfg)
    add_ohem_config(cfg)
    add_iou_balanced_config(cfg)
    add_atss_config(cfg)
    add_fcos_config(cfg)
    add_libra_config(cfg)
    add_roi_sampler_config(cfg)
    add_iou_balanced_rpn_config(cfg)
    return cfg
