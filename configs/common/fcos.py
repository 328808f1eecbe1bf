# LazyConfig twins of configs/Base-FCOS.yaml and the FCOS + ATSS yaml configs: functions that
# turn a RetinaNet LazyConfig model (Detectron2's common/models/retinanet.py layout) into
# Detectron2's FCOS (as its common/models/fcos.py does) or FCOS with ATSS assignment.
from detectron2.config import LazyCall as L
from detectron2.modeling.meta_arch.fcos import FCOSHead

from d2_sampling.modeling import FCOSATSS, ATSSMatcher, ConfigurableFCOS


def fcos_from_retinanet(model, num_convs=4):
    """
    Detectron2's FCOS (the values of its ``common/models/fcos.py``): P6/P7 from P5, a GN head
    of ``num_convs`` convs per tower with a centerness branch, score threshold 0.2 on
    ``sqrt(p x centerness)``, NMS 0.6; built as :class:`ConfigurableFCOS` (the same model as
    Detectron2's ``FCOS``, with a yacs form).
    """
    model._target_ = ConfigurableFCOS
    for key in ("anchor_generator", "box2box_transform", "anchor_matcher", "input_format"):
        if key in model:
            del model[key]
    channels = model.backbone.out_channels
    model.backbone.top_block.update(in_feature="p5", in_channels=channels)
    model.head._target_ = FCOSHead
    if "num_anchors" in model.head:
        del model.head.num_anchors
    model.head.update(norm="GN", conv_dims=[channels] * num_convs)
    model.update(test_score_thresh=0.2, test_nms_thresh=0.6, test_topk_candidates=1000)
    model.center_sampling_radius = 1.5
    return model


def fcos_atss_from_retinanet(model, anchor_scale=8.0, num_convs=4):
    """FCOS with its locations labelled by ATSS on squares of ``anchor_scale`` x stride."""
    fcos_from_retinanet(model, num_convs=num_convs)
    model._target_ = FCOSATSS
    model.anchor_matcher = L(ATSSMatcher)(topk=9, center_margin=0.01)
    model.atss_anchor_scale = anchor_scale
    return model
