"""tools/predict.py: COCO results json and drawn PNGs from a trained checkpoint, strict weights."""

import importlib.util
import json
import re

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances
from PIL import Image

import d2_sampling  # noqa: F401
from d2_sampling.data import generate_synthetic_dataset, synthetic_paths

from helpers import CONFIGS, REPO, run_script, run_train_net

QUICK_YAML = CONFIGS / "quick_schedules" / "faster_rcnn_tiny_FPN_instant_test.yaml"
QUICK_PY = CONFIGS / "quick_schedules" / "retinanet_tiny_FPN_instant_test.py"
RESULT_KEYS = {"image_id", "file_name", "category_id", "bbox", "score"}


def _predict_module():
    spec = importlib.util.spec_from_file_location("predict", REPO / "tools" / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mini_val():
    """synthetic_mini_val: (image folder, its COCO json as a dict)."""
    generate_synthetic_dataset("synthetic_mini_val")
    json_file, image_root = synthetic_paths("synthetic_mini_val")
    return image_root, json.loads(json_file.read_text())


@pytest.fixture(scope="module")
def yacs_checkpoint(tmp_path_factory):
    """The quick Faster R-CNN trained 2 iterations (seeded) on synthetic_mini_train."""
    out = tmp_path_factory.mktemp("yacs_run")
    run_train_net("--config-file", QUICK_YAML, "SOLVER.MAX_ITER", 2, "OUTPUT_DIR", out)
    return out / "model_final.pth"


def predict(config, weights, output, *inputs, extra=(), check=True):
    return run_script(
        "tools/predict.py",
        "--config-file",
        config,
        "--weights",
        weights,
        "--output",
        output,
        "--score-threshold",
        0,
        "--input",
        *inputs,
        *extra,  # last: --opts takes everything after it
        check=check,
        timeout=600,
    )


def _detections_logged(stdout):
    return sum(int(n) for n in re.findall(r": (\d+) detections -> ", stdout))


def _check_results(results, stdout, images, ids, category_ids):
    """COCO results format: one entry per detection, on the given images, ids of the dataset."""
    assert isinstance(results, list) and results, "score threshold 0: something is detected"
    assert len(results) == _detections_logged(stdout)
    for r in results:
        assert set(r) == RESULT_KEYS, r
        assert len(r["bbox"]) == 4 and all(isinstance(v, (int, float)) for v in r["bbox"])
        assert r["bbox"][2] >= 0 and r["bbox"][3] >= 0
        assert 0.0 <= r["score"] <= 1.0
        assert r["category_id"] in category_ids
        assert r["file_name"] in images
        assert r["image_id"] == ids[r["file_name"]]


@pytest.mark.slow
def test_yacs_images_json_and_pngs(tmp_path, yacs_checkpoint, mini_val):
    from pycocotools.coco import COCO

    image_root, coco = mini_val
    chosen = coco["images"][:2]
    images = {str(image_root / im["file_name"]): im for im in chosen}
    out = tmp_path / "pred"
    proc = predict(
        QUICK_YAML, yacs_checkpoint, out, *images, extra=["--dataset", "synthetic_mini_val"]
    )

    results = json.loads((out / "predictions.json").read_text())
    ids = {path: im["id"] for path, im in images.items()}
    _check_results(results, proc.stdout, images, ids, {c["id"] for c in coco["categories"]})
    # The file scores against the dataset's own json (pycocotools' loader for results).
    gt = COCO(str(synthetic_paths("synthetic_mini_val")[0]))
    assert len(gt.loadRes(str(out / "predictions.json")).getAnnIds()) == len(results)
    for path, im in images.items():
        png = out / (im["file_name"].rsplit(".", 1)[0] + ".png")
        with Image.open(png) as drawn:
            assert drawn.size == (im["width"], im["height"])
            # Something was drawn on the image (threshold 0: up to 100 boxes).
            assert not np.array_equal(
                np.asarray(drawn.convert("RGB")), np.asarray(Image.open(path))
            )


@pytest.mark.slow
def test_folder_and_config_dataset(tmp_path, yacs_checkpoint, mini_val):
    """A folder: every image in it; no --dataset: the config's DATASETS.TEST (mini val)."""
    image_root, coco = mini_val
    out = tmp_path / "pred"
    proc = predict(QUICK_YAML, yacs_checkpoint, out, image_root)
    results = json.loads((out / "predictions.json").read_text())
    ids = {str(image_root / im["file_name"]): im["id"] for im in coco["images"]}
    _check_results(results, proc.stdout, ids, ids, {c["id"] for c in coco["categories"]})
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(im["file_name"].rsplit(".", 1)[0] + ".png" for im in coco["images"])


@pytest.mark.slow
def test_lazy_config(tmp_path, mini_val):
    """The LazyConfig path (RetinaNet head, its own score threshold) trained 2 iterations."""
    image_root, coco = mini_val
    run = tmp_path / "run"
    run_train_net(
        "--config-file", QUICK_PY, "train.max_iter=2", f"train.output_dir={run}", "train.seed=0"
    )
    image = str(image_root / coco["images"][0]["file_name"])
    proc = predict(QUICK_PY, run / "model_final.pth", tmp_path / "pred", image)
    results = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    ids = {image: coco["images"][0]["id"]}
    _check_results(results, proc.stdout, ids, ids, {c["id"] for c in coco["categories"]})
    assert (
        tmp_path / "pred" / (coco["images"][0]["file_name"].rsplit(".", 1)[0] + ".png")
    ).is_file()


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_is_refused_naming_keys(tmp_path, yacs_checkpoint, mini_val):
    image = str(mini_val[0] / mini_val[1]["images"][0]["file_name"])
    # Another box head width: the box head's weights have other shapes.
    proc = predict(
        QUICK_YAML,
        yacs_checkpoint,
        tmp_path / "a",
        image,
        extra=["--opts", "MODEL.ROI_BOX_HEAD.FC_DIM", "128"],
        check=False,
    )
    assert proc.returncode == 2, proc.stdout
    assert "predict.py: error: Checkpoint" in proc.stdout
    assert "does not fit the model" in proc.stdout
    assert "roi_heads.box_head.fc1.weight (checkpoint (256, 3136), model (128, 3136))" in (
        proc.stdout
    )
    assert "Traceback" not in proc.stdout
    # A weight missing from the checkpoint.
    ckpt = torch.load(yacs_checkpoint, map_location="cpu")
    del ckpt["model"]["proposal_generator.rpn_head.conv.weight"]
    partial = tmp_path / "partial.pth"
    torch.save(ckpt, partial)
    proc = predict(QUICK_YAML, partial, tmp_path / "b", image, check=False)
    assert proc.returncode == 2, proc.stdout
    assert "1 weight(s) missing from the checkpoint: proposal_generator.rpn_head.conv.weight" in (
        proc.stdout
    )
    assert not (tmp_path / "b" / "predictions.json").exists()


@pytest.mark.slow
def test_user_errors_are_named(tmp_path, yacs_checkpoint, mini_val):
    """Missing image or checkpoint, a class count that is not the dataset's: one message."""
    missing = tmp_path / "no_such_image.jpg"
    proc = predict(QUICK_YAML, yacs_checkpoint, tmp_path / "out", missing, check=False)
    assert proc.returncode == 2
    assert f"predict.py: error: --input image or folder not found: '{missing}'" in proc.stdout
    image = mini_val[0] / mini_val[1]["images"][0]["file_name"]
    proc = predict(QUICK_YAML, tmp_path / "nope.pth", tmp_path / "out", image, check=False)
    assert proc.returncode == 2
    assert f"predict.py: error: Checkpoint not found: '{tmp_path / 'nope.pth'}'" in proc.stdout
    extra = ["--opts", "MODEL.ROI_HEADS.NUM_CLASSES", "3"]
    proc = predict(QUICK_YAML, yacs_checkpoint, tmp_path / "out", image, extra=extra, check=False)
    assert proc.returncode == 2
    assert "predict.py: error: " in proc.stdout and "MODEL.ROI_HEADS.NUM_CLASSES" in proc.stdout
    assert "Traceback" not in proc.stdout
    assert not (tmp_path / "out").exists()


def test_coco_results_entries():
    """XYXY boxes -> XYWH, contiguous classes -> the dataset's category ids."""
    predict_tool = _predict_module()
    inst = Instances((100, 100))
    inst.pred_boxes = Boxes(torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 5.5, 1.25]]))
    inst.scores = torch.tensor([0.9, 0.25])
    inst.pred_classes = torch.tensor([1, 0])
    results = predict_tool.coco_results(inst, 7, "a.jpg", {0: 1, 1: 3})
    assert results == [
        {
            "image_id": 7,
            "file_name": "a.jpg",
            "category_id": 3,
            "bbox": [10, 20, 20, 40],
            "score": 0.9,
        },
        {
            "image_id": 7,
            "file_name": "a.jpg",
            "category_id": 1,
            "bbox": [0, 0, 5.5, 1.25],
            "score": 0.25,
        },
    ]
    assert predict_tool.coco_results(inst, 7, "a.jpg", None)[0]["category_id"] == 1
    assert predict_tool.png_names(["a/x.jpg", "b/x.png", "y.jpg"]) == ["x.png", "x_2.png", "y.png"]
