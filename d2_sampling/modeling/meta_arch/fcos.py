"""
Detectron2's FCOS (Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection", ICCV
2019, arXiv 1904.01355), which Detectron2 builds from LazyConfig only, with a yacs form: the
baseline of :class:`FCOSATSS`. Nothing of FCOS changes. Keys: ``MODEL.FCOS`` and, for what it
shares with RetinaNet, ``MODEL.RETINANET`` (see d2_sampling/config.py). See docs/atss.md.
"""

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.meta_arch.fcos import FCOS, FCOSHead

__all__ = ["ConfigurableFCOS"]


@META_ARCH_REGISTRY.register()
class ConfigurableFCOS(FCOS):
    """
    :class:`detectron2.modeling.meta_arch.fcos.FCOS` built from a yacs config
    (``META_ARCHITECTURE: "ConfigurableFCOS"``); the same arguments in LazyConfig.
    """

    @configurable
    def __init__(self, **kwargs):
        """Arguments: :class:`FCOS`'s."""
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg):
        return fcos_arguments(cfg)


def fcos_arguments(cfg) -> dict:
    """
    :class:`FCOS`'s arguments from ``MODEL.FCOS`` / ``MODEL.RETINANET`` (the values of
    Detectron2's LazyConfig ``common/models/fcos.py`` as defaults in our base config).

    Raises:
        ValueError: a key out of range, naming it.
    """
    fcos, retina = cfg.MODEL.FCOS, cfg.MODEL.RETINANET
    if (
        isinstance(fcos.NUM_CONVS, bool)
        or not isinstance(fcos.NUM_CONVS, int)
        or fcos.NUM_CONVS < 1
    ):
        raise ValueError(f"MODEL.FCOS.NUM_CONVS must be an int >= 1, got {fcos.NUM_CONVS!r}")
    if not fcos.CENTER_SAMPLING_RADIUS > 0:
        raise ValueError(
            f"MODEL.FCOS.CENTER_SAMPLING_RADIUS must be > 0, got {fcos.CENTER_SAMPLING_RADIUS!r}"
        )
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    missing = [f for f in retina.IN_FEATURES if f not in shapes]
    if missing:
        raise ValueError(
            f"MODEL.RETINANET.IN_FEATURES {list(retina.IN_FEATURES)}: {missing} not among the "
            f"backbone's outputs {sorted(shapes)}"
        )
    feature_shapes = [shapes[f] for f in retina.IN_FEATURES]
    head = FCOSHead(
        input_shape=feature_shapes,
        conv_dims=[feature_shapes[0].channels] * fcos.NUM_CONVS,
        num_classes=retina.NUM_CLASSES,
        prior_prob=retina.PRIOR_PROB,
        norm=fcos.NORM,
    )
    return dict(
        backbone=backbone,
        head=head,
        head_in_features=list(retina.IN_FEATURES),
        num_classes=retina.NUM_CLASSES,
        center_sampling_radius=fcos.CENTER_SAMPLING_RADIUS,
        focal_loss_alpha=retina.FOCAL_LOSS_ALPHA,
        focal_loss_gamma=retina.FOCAL_LOSS_GAMMA,
        test_score_thresh=retina.SCORE_THRESH_TEST,
        test_topk_candidates=retina.TOPK_CANDIDATES_TEST,
        test_nms_thresh=retina.NMS_THRESH_TEST,
        max_detections_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
        pixel_mean=cfg.MODEL.PIXEL_MEAN,
        pixel_std=cfg.MODEL.PIXEL_STD,
    )
