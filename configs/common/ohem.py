# OHEM for LazyConfig: swap a StandardROIHeads for OHEMROIHeads with the same defaults as yacs.
from detectron2.config import LazyCall as L
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import MaskRCNNConvUpsampleHead

from d2_sampling.config import add_ohem_config
from d2_sampling.modeling import OHEMROIHeads

# MMDetection's OHEMSampler (configs/faster_rcnn/faster-rcnn_r50_fpn_ohem_1x_coco.py): its usual
# RoI sampler settings (512 RoIs, 25% positives), ranked by classification loss, no NMS.
MMDET_OHEM = dict(
    ohem_batch_size_per_image=512,
    ohem_loss="cls",
    ohem_nms_thresh=-1.0,
    ohem_positive_fraction=0.25,
)


def ohem_defaults():
    """``MODEL.OHEM.*`` defaults (the paper's) as ``OHEMROIHeads`` arguments: one source."""
    cfg = get_cfg()
    add_ohem_config(cfg)
    return {"ohem_" + k.lower(): v for k, v in cfg.MODEL.OHEM.items()}


def ohem_roi_heads(roi_heads, **overrides):
    """
    Turn ``L(StandardROIHeads)(...)`` into ``L(OHEMROIHeads)(...)`` in place: same heads, the
    ``ohem_*`` arguments set to the yacs defaults, then to ``overrides``. Returns it.
    """
    roi_heads._target_ = OHEMROIHeads
    roi_heads.update(ohem_defaults())
    roi_heads.update(overrides)
    return roi_heads


def add_tiny_mask_head(model, channels=64, num_classes=None):
    """Give a tiny Faster R-CNN (``rcnn_tiny()``) a Mask R-CNN head, as MASK_ON with CONV_DIM."""
    in_features = ["p2", "p3", "p4", "p5"]
    model.roi_heads.update(
        mask_in_features=in_features,
        mask_pooler=L(ROIPooler)(
            output_size=14,
            scales=(1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32),
            sampling_ratio=0,
            pooler_type="ROIAlignV2",
        ),
        mask_head=L(MaskRCNNConvUpsampleHead)(
            input_shape=ShapeSpec(channels=channels, width=14, height=14),
            num_classes=num_classes if num_classes is not None else model.roi_heads.num_classes,
            conv_dims=[channels] * 5,
        ),
    )
    return model
