"""
The dataset checks shared by every format (d2_sampling/data/checks.py), on tiny files written
here: broken and missing images, bad boxes, the cache, and the messages that name the file.
"""

import json
import logging
import os

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

import d2_sampling  # noqa: F401
from d2_sampling.data import (
    CheckedDatasetMapper,
    DatasetError,
    ImageLoadError,
    check_annotations,
    check_images,
    generate_synthetic_dataset,
    prepare_datasets,
    register_coco_format,
)
from d2_sampling.data import checks as checks_module
from d2_sampling.data import synthetic as synthetic_module


def write_jpeg(path, width=48, height=32, seed=0):
    img = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return str(path)


def truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def record(file_name, boxes, width=48, height=32, mode=BoxMode.XYXY_ABS):
    anns = [{"bbox": list(b), "bbox_mode": mode, "category_id": 0} for b in boxes]
    return {"file_name": str(file_name), "width": width, "height": height, "annotations": anns}


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    return [write_jpeg(folder / f"{i}.jpg", seed=i) for i in range(3)]


# ---------------------------------------------------------------------------------------------
# Boxes
# ---------------------------------------------------------------------------------------------
class TestCheckAnnotations:
    def test_drops_and_clips_with_one_warning(self, caplog):
        dicts = [
            record(
                "/x/a.jpg",
                [
                    (1, 2, 10, 12),  # fine
                    (5, 5, 3, 9),  # negative width
                    (7, 7, 7, 9),  # zero width
                    (50, 1, 60, 10),  # wholly right of the 48-wide image
                    (-4, -2, 10, 40),  # partly outside: clipped to (0, 0, 10, 32)
                ],
            ),
            record("/x/b.jpg", [(-10, -10, -1, -1)]),  # wholly above-left
        ]
        with caplog.at_level(logging.WARNING, logger="d2_sampling"):
            report = check_annotations(dicts, "boxes_test")
        assert [a["bbox"] for a in dicts[0]["annotations"]] == [[1, 2, 10, 12], [0.0, 0.0, 10, 32]]
        assert dicts[1]["annotations"] == []
        assert len(report.degenerate) == 2 and len(report.outside) == 2
        assert len(report.clipped) == 1 and report.num_boxes == 6
        warnings = [r.getMessage() for r in caplog.records if "boxes_test" in r.getMessage()]
        assert len(warnings) == 1
        (msg,) = warnings
        assert "dropped 4 of 6 boxes (2 of zero or negative size, 2 wholly outside" in msg
        assert "clipped 1 boxes" in msg and "a.jpg annotation #4" in msg
        assert "b.jpg annotation #0" in msg

    def test_xywh_boxes_and_the_warning_is_given_once(self, caplog):
        def dicts():
            return [record("/x/c.jpg", [(40, 0, 20, 10), (0, 0, 0, 5)], mode=BoxMode.XYWH_ABS)]

        with caplog.at_level(logging.WARNING, logger="d2_sampling"):
            first = dicts()
            check_annotations(first, "xywh_test")
            check_annotations(dicts(), "xywh_test")  # loaded again: same warning, not repeated
        assert first[0]["annotations"][0]["bbox"] == [40.0, 0.0, 8.0, 10.0]
        assert len(first[0]["annotations"]) == 1
        assert sum("xywh_test" in r.getMessage() for r in caplog.records) == 1

    def test_clean_dataset_is_silent(self, caplog):
        dicts = [record("/x/d.jpg", [(0, 0, 48, 32), (3, 4, 5, 6)])]
        with caplog.at_level(logging.WARNING, logger="d2_sampling"):
            report = check_annotations(dicts, "clean_test")
        assert report.message() is None and not caplog.records
        assert len(dicts[0]["annotations"]) == 2


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
class TestCheckImages:
    def test_truncated_jpeg_names_the_file(self, images, tmp_path):
        truncate(images[1])
        dicts = [record(p, []) for p in images]
        with pytest.raises(
            DatasetError, match=r"1 of the 3 images[\s\S]*1\.jpg: cannot be decoded"
        ):
            check_images(dicts, "truncated_test", cache_dir=tmp_path / "cache")

    def test_missing_image_names_the_file(self, images, tmp_path):
        dicts = [record(p, []) for p in images] + [record(tmp_path / "nope.jpg", [])]
        with pytest.raises(DatasetError, match=r"nope\.jpg: not found"):
            check_images(dicts, "missing_test", cache_dir=tmp_path / "cache")

    def test_size_mismatch_names_the_file(self, images, tmp_path):
        dicts = [record(images[0], [], width=50)]
        with pytest.raises(DatasetError, match=r"0\.jpg: is 48x32 .* says 50x32"):
            check_images(dicts, "size_test", cache_dir=tmp_path / "cache")

    def test_many_failures_are_counted(self, tmp_path):
        dicts = [record(tmp_path / f"missing_{i}.jpg", []) for i in range(8)]
        with pytest.raises(DatasetError, match=r"8 of the 8 images[\s\S]*and 3 more"):
            check_images(dicts, "many_test", cache_dir=tmp_path / "cache")

    def test_second_run_decodes_nothing(self, images, tmp_path, monkeypatch):
        cache = tmp_path / "cache"
        dicts = [record(p, []) for p in images] + [record(images[0], [])]  # listed twice
        first = check_images(dicts, "cache_test", cache_dir=cache, num_workers=2)
        assert (first.num_images, first.num_decoded, first.num_cached) == (3, 3, 0)

        decoded = []
        real = checks_module.decode_image_size
        monkeypatch.setattr(
            checks_module, "decode_image_size", lambda p: decoded.append(p) or real(p)
        )
        second = check_images(dicts, "cache_test", cache_dir=cache)
        assert (second.num_decoded, second.num_cached) == (0, 3) and decoded == []

        # A file rewritten since (new size or mtime) is decoded again; a broken one is caught.
        truncate(images[2])
        with pytest.raises(DatasetError, match=r"2\.jpg: cannot be decoded"):
            check_images(dicts, "cache_test", cache_dir=cache)
        assert decoded == [os.path.abspath(images[2])]
        write_jpeg(images[2], seed=2)
        st = os.stat(images[2])
        os.utime(images[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        third = check_images(dicts, "cache_test", cache_dir=cache)
        assert (third.num_decoded, third.num_cached) == (1, 2)

    def test_failures_are_not_cached(self, images, tmp_path):
        cache = tmp_path / "cache"
        truncate(images[0])
        dicts = [record(images[0], [])]
        for _ in range(2):
            with pytest.raises(DatasetError, match="0.jpg"):
                check_images(dicts, "no_cache_test", cache_dir=cache)

    def test_unwritable_cache_only_warns(self, images, tmp_path, caplog):
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        with caplog.at_level(logging.WARNING, logger="d2_sampling"):
            result = check_images([record(images[0], [])], "ro_test", cache_dir=blocker / "c")
        assert result.num_decoded == 1
        assert "Cannot write the image-check cache" in caplog.text


def test_mapper_names_the_file_it_cannot_read(images):
    truncate(images[0])
    mapper = CheckedDatasetMapper(is_train=False, augmentations=[], image_format="BGR")
    with pytest.raises(ImageLoadError, match=r"0\.jpg.*image_id 7.*truncated"):
        mapper({"file_name": images[0], "image_id": 7, "height": 32, "width": 48})
    out = mapper({"file_name": images[1], "image_id": 8, "height": 32, "width": 48})
    assert tuple(out["image"].shape) == (3, 32, 48)


def test_trainer_and_lazy_configs_use_the_checked_mapper(images):
    """Both training paths load images through CheckedDatasetMapper, so errors name the file."""
    from detectron2.config import LazyConfig

    from d2_sampling.engine import Trainer, load_yacs_config

    from helpers import CONFIGS

    truncate(images[0])
    name = "truncated_after_the_check"  # registered raw: as if the file broke mid-run
    DatasetCatalog.register(
        name, lambda: [{"file_name": images[0], "image_id": 3, "height": 32, "width": 48}]
    )
    try:
        cfg = load_yacs_config(
            str(CONFIGS / "quick_schedules" / "faster_rcnn_tiny_FPN_instant_test.yaml"), []
        )
        with pytest.raises(ImageLoadError, match=r"0\.jpg.*image_id 3"):
            next(iter(Trainer.build_test_loader(cfg, name)))
    finally:
        DatasetCatalog.remove(name)
    lazy = LazyConfig.load(
        str(CONFIGS / "quick_schedules" / "faster_rcnn_tiny_FPN_instant_test.py")
    )
    assert lazy.dataloader.train.mapper._target_ is CheckedDatasetMapper
    assert lazy.dataloader.test.mapper._target_ is CheckedDatasetMapper


# ---------------------------------------------------------------------------------------------
# COCO format
# ---------------------------------------------------------------------------------------------
def write_coco(folder, annotations, categories=({"id": 1, "name": "thing"},)):
    """A 2-image COCO json in ``folder`` (images written too); returns (json, image_root)."""
    image_root = folder / "images"
    image_root.mkdir(exist_ok=True)
    images = []
    for i in (1, 2):
        write_jpeg(image_root / f"{i}.jpg", seed=i)
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 48, "height": 32})
    anns = [{"id": k + 1, "iscrowd": 0, "area": 1.0, **a} for k, a in enumerate(annotations)]
    data = {"images": images, "annotations": anns, "categories": list(categories)}
    json_file = folder / "instances.json"
    json_file.write_text(json.dumps(data))
    return str(json_file), str(image_root)


def test_coco_unknown_category_names_file_and_annotation(tmp_path):
    json_file, image_root = write_coco(
        tmp_path,
        [
            {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"image_id": 2, "category_id": 9, "bbox": [1, 1, 5, 5]},
        ],
    )
    with pytest.raises(
        ValueError,
        match=r"instances\.json.*annotation #1 \(id 2, image_id 2\) has category_id 9.*ids \[1\]",
    ):
        register_coco_format("coco_unknown_category", json_file, image_root)
    assert "coco_unknown_category" not in DatasetCatalog.list()


def test_coco_image_without_size_names_the_image(tmp_path):
    json_file, image_root = write_coco(tmp_path, [])
    data = json.loads(open(json_file).read())
    del data["images"][1]["height"]
    open(json_file, "w").write(json.dumps(data))
    with pytest.raises(ValueError, match=r"instances\.json.*image #1 has no 'height'"):
        register_coco_format("coco_no_height", json_file, image_root)


def test_coco_loading_checks_boxes_and_images(tmp_path, caplog):
    json_file, image_root = write_coco(
        tmp_path,
        [
            {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"image_id": 1, "category_id": 1, "bbox": [3, 3, -2, 4]},  # negative width
            {"image_id": 2, "category_id": 1, "bbox": [40, 20, 20, 20]},  # partly outside
            {"image_id": 2, "category_id": 1, "bbox": [60, 0, 5, 5]},  # wholly outside
        ],
    )
    register_coco_format("coco_checked", json_file, image_root)
    with caplog.at_level(logging.WARNING, logger="d2_sampling"):
        dicts = DatasetCatalog.get("coco_checked")
    assert [[a["bbox"] for a in d["annotations"]] for d in dicts] == [
        [[1, 1, 5, 5]],
        [[40.0, 20.0, 8.0, 12.0]],
    ]
    assert "Dataset 'coco_checked': dropped 2 of 4 boxes" in caplog.text
    assert "clipped 1 boxes" in caplog.text and "2.jpg annotation #1" in caplog.text

    truncate(os.path.join(image_root, "2.jpg"))
    with pytest.raises(DatasetError, match=r"'coco_checked'[\s\S]*2\.jpg: cannot be decoded"):
        prepare_datasets(["coco_checked"])


def test_not_registered_lists_the_registered_names(tmp_path):
    json_file, image_root = write_coco(tmp_path, [])
    register_coco_format("listed_coco_dataset", json_file, image_root)
    with pytest.raises(KeyError) as info:
        prepare_datasets(["listed_coco_datset"])
    msg = str(info.value)
    assert "'listed_coco_datset' is not registered" in msg
    assert "Did you mean ['listed_coco_dataset']" in msg
    assert "Registered COCO/VOC-format datasets: [" in msg and "'listed_coco_dataset'" in msg
    assert "--voc-dataset NAME DIR SPLIT" in msg and "synthetic_mini_train" in msg


def test_synthetic_generation_logs_progress(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(synthetic_module, "_LOG_EVERY", 5)
    with caplog.at_level(logging.INFO, logger="d2_sampling"):
        generate_synthetic_dataset("synthetic_mini_val", root=tmp_path)
    progress = [r.getMessage() for r in caplog.records if "images" in r.getMessage()]
    assert "Generating synthetic_mini_val: 5/8 images" in progress
