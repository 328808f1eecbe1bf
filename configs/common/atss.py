# LazyConfig twins of configs/Base-ATSS.yaml and of the RetinaNetATSS yaml configs: functions
# that edit a RetinaNet LazyConfig model (Detectron2's common/models/retinanet.py layout).
from detectron2.config import LazyCall as L

from d2_sampling.modeling import ATSS, ATSSHead, ATSSMatcher, RetinaNetATSS


def atss_from_retinanet(model, anchor_scale=8.0, num_convs=4):
    """
    Turn a RetinaNet model config into the paper's ATSS (same defaults as Base-ATSS.yaml):
    one anchor of ``anchor_scale`` x stride per location, GN towers of ``num_convs`` convs with
    a centerness branch, GIoU loss (weight 2), deltas weighted (10, 10, 5, 5), P6/P7 from P5,
    NMS 0.6.
    """
    model._target_ = ATSS
    model.head._target_ = ATSSHead
    channels = model.backbone.out_channels
    model.head.update(num_anchors=1, norm="GN", conv_dims=[channels] * num_convs)
    model.anchor_generator.update(
        sizes=[[anchor_scale * s] for s in model.anchor_generator.strides], aspect_ratios=[1.0]
    )
    model.box2box_transform.weights = [10.0, 10.0, 5.0, 5.0]
    # Anchors per location reach the matcher from the anchor generator at every call.
    model.anchor_matcher = L(ATSSMatcher)(topk=9, center_margin=0.01)
    model.update(
        box_loss_weight=2.0, test_score_thresh=0.05, test_topk_candidates=1000, test_nms_thresh=0.6
    )
    model.backbone.top_block.update(in_feature="p5", in_channels=channels)
    return model


def retinanet_atss_from_retinanet(model):
    """
    RetinaNet with ATSS assignment only: k = 9 candidates x RetinaNet's 9 anchors per location
    (taken from the anchor generator) per level.
    """
    model._target_ = RetinaNetATSS
    model.anchor_matcher = L(ATSSMatcher)(topk=9, center_margin=0.01)
    return model
