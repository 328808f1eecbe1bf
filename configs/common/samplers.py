# The ROI sampler as a choice for LazyConfig (d2_sampling.modeling.sampled_roi_heads): any
# StandardROIHeads subclass, e.g. Cascade R-CNN, trained with IoU-balanced sampling or OHEM, with
# the same defaults as yacs (MODEL.IOU_BALANCED, MODEL.OHEM). docs/samplers.md.
import copy

from detectron2.config import LazyCall as L
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, CascadeROIHeads

from d2_sampling.modeling import IoUBalancedSampling, OHEMSampling, sampled_roi_heads

from .iou_balanced import iou_balanced_defaults
from .ohem import ohem_defaults

# Detectron2's Cascade R-CNN (MODEL.ROI_BOX_CASCADE_HEAD defaults): per stage, the IoU threshold
# of its matcher and the weights of its box coder.
CASCADE_IOUS = (0.5, 0.6, 0.7)
CASCADE_BBOX_REG_WEIGHTS = ((10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15))


def cascade_roi_heads(roi_heads):
    """
    Turn ``L(StandardROIHeads)(...)`` of a Faster R-CNN into ``L(CascadeROIHeads)(...)`` in
    place, as Detectron2's common/models/cascade_rcnn.py and the yacs ``CascadeROIHeads``: three
    stages with the same box head and predictor as before, class-agnostic box regression,
    matchers at IoU 0.5 / 0.6 / 0.7 without low-quality matches. Returns it.
    """
    box_head = roi_heads.pop("box_head")
    box_predictor = roi_heads.pop("box_predictor")
    roi_heads.pop("proposal_matcher")
    predictors = []
    for weights in CASCADE_BBOX_REG_WEIGHTS:
        p = copy.deepcopy(box_predictor)
        p.box2box_transform = L(Box2BoxTransform)(weights=weights)
        p.cls_agnostic_bbox_reg = True
        p.num_classes = "${...num_classes}"  # one level deeper: inside the list
        predictors.append(p)
    roi_heads.update(
        _target_=CascadeROIHeads,
        box_heads=[copy.deepcopy(box_head) for _ in CASCADE_IOUS],
        box_predictors=predictors,
        proposal_matchers=[
            L(Matcher)(thresholds=[iou], labels=[0, 1], allow_low_quality_matches=False)
            for iou in CASCADE_IOUS
        ],
    )
    return roi_heads


def _heads_name(target):
    for name, obj in ROI_HEADS_REGISTRY:
        if obj is target:
            return name
    return f"{target.__module__}.{target.__qualname__}"


def with_sampler(roi_heads, sampler):
    """
    Train the heads ``L(X)(...)`` with ``sampler`` (an ``L(IoUBalancedSampling)(...)`` or
    ``L(OHEMSampling)(...)`` node), in place: ``_target_`` becomes ``sampled_roi_heads``,
    ``heads`` names ``X``, every argument of ``X`` stays where it was. Returns it.
    """
    roi_heads.update(_target_=sampled_roi_heads, heads=_heads_name(roi_heads._target_))
    roi_heads.sampler = sampler
    return roi_heads


def iou_balanced_sampling(**overrides):
    """``L(IoUBalancedSampling)`` with the yacs defaults (Libra R-CNN's), then ``overrides``."""
    return L(IoUBalancedSampling)(**{**iou_balanced_defaults(), **overrides})


def ohem_sampling(**overrides):
    """``L(OHEMSampling)`` with the yacs defaults (the paper's), then ``overrides``."""
    return L(OHEMSampling)(**{**ohem_defaults(), **overrides})


__all__ = [
    "cascade_roi_heads",
    "iou_balanced_sampling",
    "ohem_sampling",
    "with_sampler",
]
