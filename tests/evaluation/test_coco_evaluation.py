"""
COCO evaluation: ground truth scores AP 100; the fast evaluator agrees with pycocotools; every
task of the model is reported, also when nothing is predicted.
"""

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances

import d2_sampling  # noqa: F401
from d2_sampling.data import register_coco_format
from d2_sampling.engine.setup import load_yacs_config
from d2_sampling.evaluation import COCOEvaluator as TasksCOCOEvaluator
from d2_sampling.evaluation import evaluation_tasks

from helpers import COCO_TINY, CONFIGS, coco_tiny_available, run_train_net


def _gt_as_detections(dicts):
    inputs, outputs = [], []
    for d in dicts:
        anns = [a for a in d["annotations"] if not a.get("iscrowd", 0)]
        inst = Instances((d["height"], d["width"]))
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.ones(len(anns))
        inst.pred_classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        inputs.append({"image_id": d["image_id"]})
        outputs.append({"instances": inst})
    return inputs, outputs


@pytest.mark.skipif(not coco_tiny_available(), reason="coco_tiny not present")
def test_ground_truth_gives_ap_100(tmp_path):
    name = "coco_tiny_val_gt_eval"
    register_coco_format(
        name, str(COCO_TINY / "annotations" / "instances_val2017.json"), str(COCO_TINY / "val2017")
    )
    dicts = DatasetCatalog.get(name)
    inputs, outputs = _gt_as_detections(dicts)
    for fast in (True, False):
        evaluator = COCOEvaluator(name, output_dir=str(tmp_path / str(fast)), use_fast_impl=fast)
        evaluator.reset()
        evaluator.process(inputs, outputs)
        res = evaluator.evaluate()["bbox"]
        assert res["AP"] == pytest.approx(100.0), res
        assert res["AP50"] == pytest.approx(100.0) and res["AP75"] == pytest.approx(100.0)
    # A wrong class on every box must not score 100: the check can fail.
    for out in outputs:
        out["instances"].pred_classes = (out["instances"].pred_classes + 1) % 80
    evaluator = COCOEvaluator(name, output_dir=str(tmp_path / "wrong"))
    evaluator.reset()
    evaluator.process(inputs, outputs)
    assert evaluator.evaluate()["bbox"]["AP"] < 5


@pytest.mark.slow
def test_fast_evaluator_agrees_with_pycocotools(tmp_path):
    """A real (briefly trained) model's detections, scored by both implementations."""
    out = tmp_path / "train"
    cfg_file = CONFIGS / "quick_schedules" / "faster_rcnn_tiny_FPN_instant_test.yaml"
    # Overfit the 16 training images a little so the model finds objects on them.
    run_train_net(
        "--config-file",
        cfg_file,
        "SOLVER.MAX_ITER",
        60,
        "SOLVER.BASE_LR",
        0.02,
        "SOLVER.CHECKPOINT_PERIOD",
        1000,
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        out,
    )
    cfg = load_yacs_config(
        str(cfg_file),
        ["MODEL.WEIGHTS", str(out / "model_final.pth"), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"],
    )
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    name = "synthetic_mini_train"
    loader = build_detection_test_loader(cfg, name)
    results = {}
    for fast in (True, False):
        evaluator = COCOEvaluator(
            name, output_dir=str(tmp_path / f"eval_{fast}"), use_fast_impl=fast
        )
        results[fast] = inference_on_dataset(model, loader, evaluator)["bbox"]
    assert results[True]["AP50"] > 0.1, results  # it found something, so agreement means something
    for key in results[False]:
        assert results[True][key] == pytest.approx(results[False][key], abs=1e-6), key


def test_no_prediction_reports_every_task_as_zero(tmp_path):
    """Detectron2 would infer the tasks from the predictions and drop segm; we report 0 for it."""
    name = "synthetic_mini_val"
    dicts = DatasetCatalog.get(name)
    inputs = [{"image_id": d["image_id"]} for d in dicts]
    outputs = []
    for d in dicts:
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.zeros(0, 4))
        inst.scores = torch.zeros(0)
        inst.pred_classes = torch.zeros(0, dtype=torch.int64)
        inst.pred_masks = torch.zeros(0, d["height"], d["width"], dtype=torch.bool)
        outputs.append({"instances": inst})
    evaluator = TasksCOCOEvaluator(name, ("bbox", "segm"), output_dir=str(tmp_path))
    evaluator.reset()
    evaluator.process(inputs, outputs)
    res = evaluator.evaluate()
    assert sorted(res) == ["bbox", "segm"]
    for task in ("bbox", "segm"):
        assert res[task] == {m: 0.0 for m in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
    # Detectron2's own evaluator, tasks inferred: no segm at all (the reason for ours).
    d2 = COCOEvaluator(name, output_dir=str(tmp_path / "d2"))
    d2.reset()
    d2.process(inputs, outputs)
    assert "segm" not in d2.evaluate()


def test_tasks_come_from_the_config_and_are_required():
    cfg = load_yacs_config(
        str(CONFIGS / "quick_schedules" / "faster_rcnn_tiny_FPN_instant_test.yaml"), []
    )
    assert evaluation_tasks(cfg) == ("bbox",)
    cfg = load_yacs_config(
        str(CONFIGS / "quick_schedules" / "mask_rcnn_tiny_FPN_ohem_instant_test.yaml"), []
    )
    assert evaluation_tasks(cfg) == ("bbox", "segm")
    with pytest.raises(ValueError, match="tasks"):
        TasksCOCOEvaluator("synthetic_mini_val")
