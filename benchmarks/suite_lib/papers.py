"""
The published deltas the report's "Against the papers" table sets our paired deltas beside: for
each method comparison of the suite (a method key of ``regimes._methods`` and its baseline),
the improvement its paper (or MMDetection's model zoo) reports, with where it is printed.

Each entry:

- ``method``, ``baseline``: suite method keys (the regimes' ``Method.key`` / ``baseline``);
- ``source``: the paper or model zoo, ``url`` its address, ``where`` the table;
- ``setting``: the published setting (dataset, backbone, schedule);
- ``delta``: metric -> published Δ in points, in the suite's metric names (``METRICS``; a
  VOC mAP at IoU 0.5 is written ``AP50``). Our cells show Δ AP and, besides, every other metric
  of ``delta`` (Δ AP75 for Libra R-CNN, Δ AP50 for the OHEM paper's VOC mAP);
- ``values`` (optional): metric -> (baseline, method), the published numbers themselves.
"""

PUBLISHED = (
    dict(
        method="ohem",
        baseline="faster_rcnn",
        source="OHEM (Shrivastava et al. 2016)",
        url="https://arxiv.org/abs/1604.03540",
        where="VOC 2007 test",
        # The paper's detector is Fast R-CNN; its VOC mAP is the AP at IoU 0.5 (our AP50).
        setting="mAP (IoU 0.5: our AP50), Fast R-CNN VGG16 trained on VOC 07+12",
        delta={"AP50": 3.0},
        values={"AP50": (66.9, 69.9)},
    ),
    dict(
        method="ohem_mmdet",
        baseline="faster_rcnn",
        source="MMDetection",
        url="https://github.com/open-mmlab/mmdetection",
        where="COCO model zoo, faster_rcnn_r50_fpn_ohem_1x",
        setting="COCO, Faster R-CNN R50-FPN, 1x",
        delta={"AP": 0.2},
        values={"AP": (36.4, 36.6)},
    ),
    dict(
        method="iou_balanced",
        baseline="faster_rcnn",
        source="Libra R-CNN (Pang et al. 2019)",
        url="https://arxiv.org/abs/1904.02701",
        where="Table 2",
        setting="COCO, Faster R-CNN R50-FPN, 1x",
        delta={"AP": 0.9, "AP75": 1.6},
    ),
    dict(
        method="retinanet_atss",
        baseline="retinanet",
        source="ATSS (Zhang et al. 2020)",
        url="https://arxiv.org/abs/1912.02424",
        where="Table 7",
        setting="COCO, RetinaNet R50 (#A=9, with the paper's improvements), 1x",
        delta={"AP": 0.8},
        values={"AP": (38.4, 39.2)},
    ),
    dict(
        method="atss",
        baseline="retinanet",
        source="ATSS (Zhang et al. 2020)",
        url="https://arxiv.org/abs/1912.02424",
        where="Table 3",
        setting="COCO, R50, 1x",
        delta={"AP": 2.3},
        values={"AP": (37.0, 39.3)},
    ),
    # The opt-in methods (bccd --extra).
    dict(
        method="fcos_atss",
        baseline="fcos",
        source="ATSS (Zhang et al. 2020)",
        url="https://arxiv.org/abs/1912.02424",
        where="Table 3",
        # Detectron2's FCOS (our baseline) has center sampling: the paper's 38.6 row.
        setting="COCO, FCOS R50 with center sampling -> + ATSS, 1x",
        delta={"AP": 0.6},
        values={"AP": (38.6, 39.2)},
    ),
    dict(
        method="libra_sampler_bfp",
        baseline="faster_rcnn",
        source="Libra R-CNN (Pang et al. 2019)",
        url="https://arxiv.org/abs/1904.02701",
        where="Table 2",
        setting="COCO, Faster R-CNN R50-FPN, 1x: + IoU-balanced sampling + BFP",
        delta={"AP": 1.8},
        values={"AP": (35.9, 37.7)},
    ),
    dict(
        method="libra",
        baseline="faster_rcnn",
        source="Libra R-CNN (Pang et al. 2019)",
        url="https://arxiv.org/abs/1904.02701",
        where="Table 2",
        setting="COCO, Faster R-CNN R50-FPN, 1x: all three parts",
        delta={"AP": 2.6},
        values={"AP": (35.9, 38.5)},
    ),
)


def our_metrics(entry):
    """The metrics of our cells for a published entry: AP, then the paper's others."""
    return ["AP"] + [k for k in entry["delta"] if k != "AP"]
