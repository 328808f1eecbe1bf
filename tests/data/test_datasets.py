"""Datasets: the synthetic generator, COCO-format registration and its errors."""

import json

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import d2_sampling  # noqa: F401
from d2_sampling.data import (
    SYNTHETIC_CLASSES,
    generate_synthetic_dataset,
    prepare_datasets,
    register_coco_format,
    synthetic_paths,
)

from helpers import COCO_TINY, coco_tiny_available


def _load(json_file):
    with open(json_file) as f:
        return json.load(f)


def test_synthetic_generation_is_deterministic(tmp_path):
    a = generate_synthetic_dataset("synthetic_mini_train", root=tmp_path / "a")
    b = generate_synthetic_dataset("synthetic_mini_train", root=tmp_path / "b")
    assert _load(a) == _load(b)
    _, images_a = synthetic_paths("synthetic_mini_train", root=tmp_path / "a")
    _, images_b = synthetic_paths("synthetic_mini_train", root=tmp_path / "b")
    files = sorted(p.name for p in images_a.iterdir())
    assert len(files) == 16
    for name in files:
        assert (images_a / name).read_bytes() == (images_b / name).read_bytes()
    # A second call reuses the files, it does not regenerate.
    mtime = a.stat().st_mtime_ns
    generate_synthetic_dataset("synthetic_mini_train", root=tmp_path / "a")
    assert a.stat().st_mtime_ns == mtime


def test_synthetic_dataset_content(tmp_path):
    """Several classes, all COCO size ranges, overlaps, empty images, valid boxes."""
    coco = _load(generate_synthetic_dataset("synthetic_val", root=tmp_path))
    assert [c["name"] for c in coco["categories"]] == SYNTHETIC_CLASSES
    anns = coco["annotations"]
    assert {a["category_id"] for a in anns} == set(range(1, len(SYNTHETIC_CLASSES) + 1))
    areas = np.array([a["bbox"][2] * a["bbox"][3] for a in anns])
    assert (areas < 32**2).sum() > 50, "small objects"
    assert ((areas >= 32**2) & (areas < 96**2)).sum() > 50, "medium objects"
    assert (areas >= 96**2).sum() > 50, "large objects"
    sizes = {i["id"]: (i["width"], i["height"]) for i in coco["images"]}
    by_image = {}
    for a in anns:
        x, y, w, h = a["bbox"]
        W, H = sizes[a["image_id"]]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W + 1e-6 and y + h <= H + 1e-6
        by_image.setdefault(a["image_id"], []).append((x, y, x + w, y + h))

    def iou(p, q):
        ix = max(0, min(p[2], q[2]) - max(p[0], q[0]))
        iy = max(0, min(p[3], q[3]) - max(p[1], q[1]))
        inter = ix * iy
        return inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter)

    overlapping = sum(
        1
        for boxes in by_image.values()
        for i in range(len(boxes))
        for j in range(i)
        if iou(boxes[i], boxes[j]) > 0.05
    )
    assert overlapping > 10, "objects overlap"
    train = _load(generate_synthetic_dataset("synthetic_mini_train", root=tmp_path))
    assert (
        len({i["id"] for i in train["images"]} - {a["image_id"] for a in train["annotations"]}) == 2
    )


def test_synthetic_registered_and_loadable():
    dicts = DatasetCatalog.get("synthetic_mini_val")
    assert len(dicts) == 8
    assert MetadataCatalog.get("synthetic_mini_val").thing_classes == SYNTHETIC_CLASSES
    assert all(len(d["annotations"]) > 0 for d in dicts)


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_register_coco_format_errors(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    missing = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        register_coco_format("bad_missing_json", missing, str(images))
    good = _write(
        tmp_path / "good.json", json.dumps({"images": [], "annotations": [], "categories": []})
    )
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        register_coco_format("bad_missing_dir", good, str(tmp_path / "no_such_folder"))
    broken = _write(tmp_path / "broken.json", '{"images": [')
    with pytest.raises(ValueError, match="Malformed COCO json.*broken.json"):
        register_coco_format("bad_syntax", broken, str(images))
    no_keys = _write(tmp_path / "nokeys.json", json.dumps({"images": []}))
    with pytest.raises(
        ValueError, match=r"nokeys.json.*missing key\(s\) \['annotations', 'categories'\]"
    ):
        register_coco_format("bad_keys", no_keys, str(images))
    bad_box = _write(
        tmp_path / "badbox.json",
        json.dumps(
            {
                "images": [],
                "categories": [],
                "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}],
            }
        ),
    )
    with pytest.raises(ValueError, match=r"badbox.json.*annotation #0 bbox"):
        register_coco_format("bad_box", bad_box, str(images))
    assert not {"bad_missing_json", "bad_syntax", "bad_keys", "bad_box"} & set(
        DatasetCatalog.list()
    )


def test_register_coco_format_name_clash(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    a = _write(tmp_path / "a.json", json.dumps({"images": [], "annotations": [], "categories": []}))
    b = _write(tmp_path / "b.json", json.dumps({"images": [], "annotations": [], "categories": []}))
    register_coco_format("clash_test", a, str(images))
    register_coco_format("clash_test", a, str(images))  # same files: fine
    with pytest.raises(ValueError, match="clash_test.*already registered"):
        register_coco_format("clash_test", b, str(images))


def test_prepare_unknown_dataset():
    with pytest.raises(KeyError, match="no_such_dataset"):
        prepare_datasets(["no_such_dataset"])


@pytest.mark.skipif(not coco_tiny_available(), reason="coco_tiny not present")
def test_coco_tiny_loads():
    register_coco_format(
        "coco_tiny_val_test",
        str(COCO_TINY / "annotations" / "instances_val2017.json"),
        str(COCO_TINY / "val2017"),
    )
    dicts = DatasetCatalog.get("coco_tiny_val_test")
    assert len(dicts) == 80
    assert len(MetadataCatalog.get("coco_tiny_val_test").thing_classes) == 80
    assert sum(len(d["annotations"]) for d in dicts) == 815
