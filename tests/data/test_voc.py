"""
Pascal VOC-format datasets (d2_sampling/data/voc.py) and the VOC evaluator
(d2_sampling/evaluation/voc_evaluation.py): tiny folders written here, and BCCD when present.
"""

import logging
from collections import Counter

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import PascalVOCDetectionEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

import d2_sampling  # noqa: F401
from d2_sampling.data import (
    DatasetError,
    load_voc_format,
    prepare_datasets,
    register_voc_format,
    voc_class_names,
)
from d2_sampling.engine.setup import load_yacs_config
from d2_sampling.evaluation import COCOEvaluator, VOCEvaluator

from helpers import CONFIGS, REPO

BCCD = REPO.parent / "shared" / "data" / "bccd"
QUICK_YAML = CONFIGS / "quick_schedules" / "faster_rcnn_tiny_FPN_instant_test.yaml"


def bccd_available() -> bool:
    return (BCCD / "ImageSets" / "Main" / "trainval.txt").is_file()


def _xml(filename, width, height, objects):
    objs = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{difficult}</difficult><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
        f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
        for name, box, difficult in objects
    )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{width}</width>"
        f"<height>{height}</height><depth>3</depth></size>{objs}</annotation>"
    )


def write_voc(root, images, splits, width=64, height=48):
    """
    A VOC folder: ``images`` maps an id to its objects ``[(name, (xmin, ymin, xmax, ymax),
    difficult), ...]`` (1-based VOC coordinates); ``splits`` maps a split to its ids.
    """
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for file_id, objects in images.items():
        img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "JPEGImages" / f"{file_id}.jpg"), img)
        (root / "Annotations" / f"{file_id}.xml").write_text(
            _xml(f"{file_id}.jpg", width, height, objects)
        )
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return str(root)


TINY = {
    "a": [("dog", (1, 1, 64, 48), 0), ("cat", (10, 5, 20, 30), 0)],
    "b": [("cat", (5, 5, 5, 9), 0), ("cat", (60, 40, 70, 50), 0), ("bird", (3, 3, 9, 9), 1)],
    "c": [("dog", (70, 50, 80, 60), 0)],
}
SPLITS = {"train": ["a", "b"], "test": ["c"]}


class TestLoader:
    def test_classes_sorted_from_every_split(self, tmp_path):
        root = write_voc(tmp_path, TINY, SPLITS)
        # 'bird' appears in train only: the test split still gets all three, in one order.
        assert voc_class_names(root) == ["bird", "cat", "dog"]
        (tmp_path / "classes.txt").write_text("dog\ncat\n\nbird\n")
        assert voc_class_names(root) == ["dog", "cat", "bird"]
        assert voc_class_names(root, ["cat", "dog", "bird"]) == ["cat", "dog", "bird"]
        with pytest.raises(DatasetError, match=r"repeats \['cat'\]"):
            voc_class_names(root, ["cat", "cat"])

    def test_boxes_follow_detectron2_and_defects_are_handled(self, tmp_path, caplog):
        root = write_voc(tmp_path, TINY, SPLITS)
        register_voc_format("tiny_voc_train", root, "train")
        with caplog.at_level(logging.WARNING, logger="d2_sampling"):
            a, b = DatasetCatalog.get("tiny_voc_train")
        assert (a["image_id"], a["width"], a["height"]) == ("a", 64, 48)
        assert a["file_name"].endswith("JPEGImages/a.jpg")
        # 1-based pixel indices: xmin/ymin lose 1, (1, 1, W, H) is the whole image.
        assert [(x["category_id"], x["bbox"]) for x in a["annotations"]] == [
            (2, [0.0, 0.0, 64.0, 48.0]),
            (1, [9.0, 4.0, 20.0, 30.0]),
        ]
        assert all(x["bbox_mode"] == BoxMode.XYXY_ABS for x in a["annotations"])
        # b: the zero-width box is dropped, the one past the corner clipped, 'difficult' kept.
        assert [(x["bbox"], x["difficult"]) for x in b["annotations"]] == [
            ([59.0, 39.0, 64.0, 48.0], 0),
            ([2.0, 2.0, 9.0, 9.0], 1),
        ]
        (msg,) = [r.getMessage() for r in caplog.records if "tiny_voc_train" in r.getMessage()]
        assert "dropped 1 of 5 boxes (1 of zero or negative size" in msg
        assert "b.jpg annotation #0 [5.0, 5.0, 5.0, 9.0]" in msg and "clipped 1 boxes" in msg
        meta = MetadataCatalog.get("tiny_voc_train")
        assert meta.thing_classes == ["bird", "cat", "dog"]
        assert (meta.dirname, meta.split, meta.year) == (root, "train", 2012)

    def test_box_wholly_outside_is_dropped(self, tmp_path, caplog):
        root = write_voc(tmp_path, TINY, SPLITS)
        register_voc_format("tiny_voc_test", root, "test")
        with caplog.at_level(logging.WARNING, logger="d2_sampling"):
            (c,) = DatasetCatalog.get("tiny_voc_test")
        assert c["annotations"] == []
        assert "0 of zero or negative size, 1 wholly outside" in caplog.text

    def test_unknown_class_names_the_xml_and_object(self, tmp_path):
        root = write_voc(tmp_path, TINY, SPLITS)
        with pytest.raises(DatasetError, match=r"b\.xml.*object #2 has class 'bird'.*\['cat'"):
            load_voc_format(root, "train", ["cat", "dog"])
        (tmp_path / "classes.txt").write_text("cat\ndog\n")
        register_voc_format("tiny_voc_classes_file", root, "train")
        with pytest.raises(DatasetError, match=r"b\.xml.*object #2 has class 'bird'"):
            DatasetCatalog.get("tiny_voc_classes_file")

    def test_malformed_xml_names_the_file(self, tmp_path):
        root = write_voc(tmp_path, TINY, SPLITS)
        (tmp_path / "Annotations" / "b.xml").write_text("<annotation><size><width>6")
        with pytest.raises(DatasetError, match=r"Malformed VOC xml .*b\.xml"):
            register_voc_format("tiny_voc_malformed", root, "train")  # reading the classes
        with pytest.raises(DatasetError, match=r"Malformed VOC xml .*b\.xml"):
            load_voc_format(root, "train", ["bird", "cat", "dog"])
        (tmp_path / "Annotations" / "b.xml").write_text(
            "<annotation><size><width>64</width><height>48</height></size><object>"
            "<name>cat</name><bndbox><xmin>1</xmin><ymin>x</ymin></bndbox></object></annotation>"
        )
        with pytest.raises(DatasetError, match=r"b\.xml.*object #0 <bndbox/ymin> is 'x'"):
            load_voc_format(root, "train", ["bird", "cat", "dog"])
        assert "tiny_voc_malformed" not in DatasetCatalog.list()

    def test_missing_files_are_named(self, tmp_path):
        root = write_voc(tmp_path, TINY, SPLITS)
        with pytest.raises(FileNotFoundError, match=r"val\.txt.*splits: \['test', 'train'\]"):
            register_voc_format("tiny_voc_no_split", root, "val")
        with pytest.raises(FileNotFoundError, match="no_such_folder"):
            register_voc_format("tiny_voc_no_dir", tmp_path / "no_such_folder", "train")
        (tmp_path / "JPEGImages" / "b.jpg").unlink()
        register_voc_format("tiny_voc_missing_image", root, "train")
        with pytest.raises(DatasetError, match=r"1 of the 2 images[\s\S]*b\.jpg: not found"):
            prepare_datasets(["tiny_voc_missing_image"])
        (tmp_path / "Annotations" / "a.xml").unlink()
        with pytest.raises(FileNotFoundError, match=r"a\.xml"):
            load_voc_format(root, "train", ["bird", "cat", "dog"])

    def test_registering_twice(self, tmp_path):
        root = write_voc(tmp_path, TINY, SPLITS)
        register_voc_format("tiny_voc_twice", root, "train")
        register_voc_format("tiny_voc_twice", root, "train")  # the same: fine
        with pytest.raises(ValueError, match="tiny_voc_twice.*already registered"):
            register_voc_format("tiny_voc_twice", root, "test")


def test_relative_paths_resolve_from_the_config_folder(tmp_path, monkeypatch):
    write_voc(tmp_path / "data" / "voc", TINY, SPLITS)
    (tmp_path / "configs").mkdir()
    yaml = tmp_path / "configs" / "mine.yaml"
    yaml.write_text(
        f'_BASE_: "{QUICK_YAML}"\n'
        "DATASETS:\n"
        '  VOC_FORMAT: [["rel_voc_train", "../data/voc", "train"]]\n'
        '  TEST: ("rel_voc_train",)\n'
        'TEST:\n  EVALUATOR: "voc"\n'
    )
    monkeypatch.chdir(REPO)  # not the config's folder
    cfg = load_yacs_config(str(yaml), [])
    assert cfg.TEST.EVALUATOR == "voc"
    assert MetadataCatalog.get("rel_voc_train").dirname == str(tmp_path / "data" / "voc")
    # Typed on the command line, a path is relative to the working directory.
    monkeypatch.chdir(tmp_path / "data")
    load_yacs_config(str(yaml), ["DATASETS.VOC_FORMAT", "[['rel_voc_cli', 'voc', 'test']]"])
    assert MetadataCatalog.get("rel_voc_cli").dirname == str(tmp_path / "data" / "voc")
    with pytest.raises(ValueError, match="TEST.EVALUATOR must be one of.*'pascal'"):
        load_yacs_config(str(yaml), ["TEST.EVALUATOR", "pascal"])


# ---------------------------------------------------------------------------------------------
# VOC evaluation
# ---------------------------------------------------------------------------------------------
def _detections(dicts, boxes_per_image):
    """``boxes_per_image``: image_id -> [(class, (x0, y0, x1, y1), score), ...]."""
    inputs, outputs = [], []
    for d in dicts:
        dets = boxes_per_image.get(d["image_id"], [])
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor([b for _, b, _ in dets], dtype=torch.float32))
        inst.pred_boxes.tensor = inst.pred_boxes.tensor.reshape(-1, 4)
        inst.scores = torch.tensor([s for _, _, s in dets], dtype=torch.float32)
        inst.pred_classes = torch.tensor([c for c, _, _ in dets], dtype=torch.int64)
        inputs.append({"image_id": d["image_id"]})
        outputs.append({"instances": inst})
    return inputs, outputs


def _gt_as_detections(dicts):
    return _detections(
        dicts,
        {
            d["image_id"]: [
                (a["category_id"], BoxMode.convert(a["bbox"], a["bbox_mode"], 0), 1.0)
                for a in d["annotations"]
            ]
            for d in dicts
        },
    )


def _evaluate(evaluator, inputs, outputs):
    evaluator.reset()
    evaluator.process(inputs, outputs)
    return evaluator.evaluate()["bbox"]


def test_voc_evaluator_exact_ap(tmp_path, caplog):
    """Hand-computed VOC APs: a TP, a FP, a miss; a difficult box; a class with no ground truth."""
    images = {
        "p": [("cat", (11, 11, 30, 30), 0), ("cat", (41, 11, 60, 30), 0)],
        "q": [("dog", (1, 1, 20, 20), 0), ("dog", (31, 21, 50, 40), 1)],
    }
    root = write_voc(tmp_path, images, {"test": ["p", "q"]})
    register_voc_format("exact_voc", root, "test", ["cat", "dog", "fox"])
    dicts = DatasetCatalog.get("exact_voc")
    inputs, outputs = _detections(
        dicts,
        {
            # cat: TP (0.9), then a FP (0.8); the second cat missed -> P/R (1, .5), (.5, .5)
            "p": [(0, (10, 10, 30, 30), 0.9), (0, (0, 40, 10, 48), 0.8)],
            # dog: TP; a detection of the difficult dog counts neither way; fox: a FP.
            "q": [(1, (0, 0, 20, 20), 0.7), (1, (30, 20, 50, 40), 0.95), (2, (1, 1, 5, 5), 0.5)],
        },
    )
    with caplog.at_level(logging.WARNING, logger="d2_sampling"):
        res = _evaluate(VOCEvaluator("exact_voc"), inputs, outputs)
    assert res["AP50-cat"] == pytest.approx(50.0)
    assert res["AP50-dog"] == pytest.approx(100.0)
    assert np.isnan(res["AP50-fox"]) and "['fox']" in caplog.text
    assert res["AP50"] == pytest.approx(75.0)  # the mean over cat and dog only
    # The 11-point AP of VOC2007 differs: cat's precision is 1 up to recall 0.5 -> 6/11.
    res07 = _evaluate(VOCEvaluator("exact_voc", use_07_metric=True), inputs, outputs)
    assert res07["AP50-cat"] == pytest.approx(100 * 6 / 11)


def test_voc_evaluator_on_a_coco_format_dataset():
    prepare_datasets(["synthetic_mini_val"])
    dicts = DatasetCatalog.get("synthetic_mini_val")
    inputs, outputs = _gt_as_detections(dicts)
    res = _evaluate(VOCEvaluator("synthetic_mini_val"), inputs, outputs)
    assert res["AP50"] == pytest.approx(100.0) and res["AP"] > 95


# ---------------------------------------------------------------------------------------------
# BCCD: a real VOC-format dataset, with its published defects
# ---------------------------------------------------------------------------------------------
# Boxes per class and split, from the xml files (BCCD's README: RBC 4155, WBC 372, Platelets
# 361 over 205 / 87 / 72 images); one zero-size RBC in train (BloodImage_00343) and one in val
# (BloodImage_00338) are dropped.
BCCD_COUNTS = {
    "train": (205, {"Platelets": 209, "RBC": 2381, "WBC": 214}),
    "val": (87, {"Platelets": 83, "RBC": 967, "WBC": 87}),
    "test": (72, {"Platelets": 69, "RBC": 805, "WBC": 71}),
}


@pytest.mark.skipif(not bccd_available(), reason="BCCD not present")
def test_bccd_loads_with_its_defects_handled(caplog):
    with caplog.at_level(logging.WARNING, logger="d2_sampling"):
        for split, (num_images, counts) in BCCD_COUNTS.items():
            name = f"bccd_{split}_test"
            register_voc_format(name, BCCD, split)
            dicts = DatasetCatalog.get(name)
            classes = MetadataCatalog.get(name).thing_classes
            assert classes == ["Platelets", "RBC", "WBC"]
            assert len(dicts) == num_images
            found = Counter(classes[a["category_id"]] for d in dicts for a in d["annotations"])
            assert dict(found) == counts
    assert sum(sum(c.values()) for _, c in BCCD_COUNTS.values()) == 4888 - 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "bccd_train_test" in w and "BloodImage_00343.jpg annotation #3" in w for w in warnings
    )
    assert any(
        "bccd_val_test" in w and "BloodImage_00338.jpg annotation #12" in w for w in warnings
    )
    assert not any("bccd_test_test" in w for w in warnings)


@pytest.mark.skipif(not bccd_available(), reason="BCCD not present")
def test_bccd_ground_truth_scores_100_with_both_evaluators(tmp_path):
    register_voc_format("bccd_val_eval", BCCD, "val")
    dicts = DatasetCatalog.get("bccd_val_eval")
    inputs, outputs = _gt_as_detections(dicts)
    voc = _evaluate(VOCEvaluator("bccd_val_eval"), inputs, outputs)
    assert voc["AP50"] == pytest.approx(100.0) and voc["AP"] == pytest.approx(100.0)
    assert {k for k in voc if k.startswith("AP50-")} == {"AP50-Platelets", "AP50-RBC", "AP50-WBC"}
    coco = _evaluate(
        COCOEvaluator("bccd_val_eval", ("bbox",), output_dir=str(tmp_path)), inputs, outputs
    )
    assert coco["AP"] == pytest.approx(100.0) and "AP-RBC" in coco
    # Detectron2's own evaluator runs on this layout too, but re-reads the xml, so it still
    # scores the zero-size RBC the check dropped (a box no detector can find): below 100.
    d2 = _evaluate(PascalVOCDetectionEvaluator("bccd_val_eval"), inputs, outputs)
    assert 99 < d2["AP50"] < 100
    # A wrong class on every box must not score 100: the check can fail.
    for out in outputs:
        out["instances"].pred_classes = (out["instances"].pred_classes + 1) % 3
    assert _evaluate(VOCEvaluator("bccd_val_eval"), inputs, outputs)["AP50"] < 5
