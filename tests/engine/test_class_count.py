"""The class count against the data (d2_sampling/engine/class_count.py), in-process."""

import json
import logging
from pathlib import Path

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import d2_sampling  # noqa: F401
from d2_sampling.data import generate_synthetic_dataset, prepare_datasets, synthetic_paths
from d2_sampling.data.datasets import register_coco_format
from d2_sampling.engine.class_count import check_class_counts, dataset_classes
from d2_sampling.engine.errors import ClassCountError, UserError
from d2_sampling.engine.setup import _set_by, load_lazy_config, load_yacs_config

from helpers import CONFIGS

QUICK = CONFIGS / "quick_schedules"
RCNN_YAML = str(QUICK / "faster_rcnn_tiny_FPN_instant_test.yaml")
ATSS_YAML = str(QUICK / "atss_tiny_FPN_instant_test.yaml")
SYNTHETIC = (["synthetic_mini_train"], ["synthetic_mini_val"])


def write_coco_variant(folder: Path, name: str, categories) -> tuple:
    """synthetic_mini_train's images and boxes under ``categories``, every box of the first."""
    json_file, image_root = synthetic_paths("synthetic_mini_train")
    generate_synthetic_dataset("synthetic_mini_train")
    data = json.loads(Path(json_file).read_text())
    data["categories"] = [{"id": i + 1, "name": c} for i, c in enumerate(categories)]
    for ann in data["annotations"]:
        ann["category_id"] = 1
    out = folder / f"{name}.json"
    out.write_text(json.dumps(data))
    return str(out), str(image_root)


@pytest.fixture(scope="module")
def one_class(tmp_path_factory):
    """A 1-class COCO dataset, registered and loaded (its thing_classes known): its name."""
    register_coco_format(
        "cc_one_class", *write_coco_variant(tmp_path_factory.mktemp("cc"), "one", ["shape"])
    )
    prepare_datasets(["cc_one_class"])
    return "cc_one_class"


def test_rcnn_count_must_match_the_training_data(one_class):
    cfg = load_yacs_config(RCNN_YAML, ["DATASETS.TRAIN", f"('{one_class}',)"])
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 5
    with pytest.raises(ClassCountError) as e:
        check_class_counts(cfg, [one_class], [])
    msg = str(e.value)
    assert "MODEL.ROI_HEADS.NUM_CLASSES is 5" in msg and "1 class ['shape']" in msg
    assert f"'{one_class}'" in msg and "Set MODEL.ROI_HEADS.NUM_CLASSES 1" in msg
    assert isinstance(e.value, UserError)
    # The right count passes, and so do the synthetic splits with the config's 5.
    cfg = load_yacs_config(RCNN_YAML, ["MODEL.ROI_HEADS.NUM_CLASSES", "1"])
    assert check_class_counts(cfg, [one_class], []) is cfg
    check_class_counts(load_yacs_config(RCNN_YAML, []), *SYNTHETIC)


def test_detectron2_default_is_checked_too(one_class):
    """A config that never sets the key (Detectron2's 80) is no exception."""
    cfg = load_yacs_config(RCNN_YAML, [])
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 80
    with pytest.raises(ClassCountError, match="NUM_CLASSES is 80, but training dataset"):
        check_class_counts(cfg, [one_class], [])


def test_minus_one_takes_the_count_from_the_data(one_class):
    cfg = load_yacs_config(RCNN_YAML, ["MODEL.ROI_HEADS.NUM_CLASSES", "-1"])
    assert check_class_counts(cfg, [one_class], []).MODEL.ROI_HEADS.NUM_CLASSES == 1
    assert cfg.is_frozen()
    cfg = load_yacs_config(ATSS_YAML, ["MODEL.RETINANET.NUM_CLASSES", "-1"])
    assert check_class_counts(cfg, *SYNTHETIC).MODEL.RETINANET.NUM_CLASSES == 5


def test_minus_one_loads_a_coco_dataset_not_loaded_yet(tmp_path):
    """A worker that did not prepare the datasets has no thing_classes of a COCO json yet."""
    register_coco_format("cc_unloaded", *write_coco_variant(tmp_path, "two", ["a", "b"]))
    assert dataset_classes("cc_unloaded") is None
    cfg = load_yacs_config(RCNN_YAML, ["MODEL.ROI_HEADS.NUM_CLASSES", "-1"])
    assert check_class_counts(cfg, ["cc_unloaded"], []).MODEL.ROI_HEADS.NUM_CLASSES == 2
    assert dataset_classes("cc_unloaded") == ["a", "b"]


def test_workers_that_do_not_check_only_fill(one_class):
    """setup() leaves the checks to the first worker of each machine; the others fill a -1."""
    cfg = load_yacs_config(RCNN_YAML, [])  # 5 classes against 1: an error where checked
    assert check_class_counts(cfg, [one_class], [], check=False) is cfg
    cfg = load_yacs_config(RCNN_YAML, ["MODEL.ROI_HEADS.NUM_CLASSES", "-1"])
    check_class_counts(cfg, [one_class], ["synthetic_mini_val"], check=False)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1


def test_non_positive_count():
    cfg = load_yacs_config(RCNN_YAML, ["MODEL.ROI_HEADS.NUM_CLASSES", "0"])
    with pytest.raises(ClassCountError, match="NUM_CLASSES is 0: a class count is a positive"):
        check_class_counts(cfg, *SYNTHETIC)


def test_atss_names_the_key_it_reads(one_class):
    """ATSS reads MODEL.RETINANET.NUM_CLASSES: setting MODEL.ROI_HEADS.NUM_CLASSES is no fix."""
    opts = ["DATASETS.TRAIN", f"('{one_class}',)", "MODEL.ROI_HEADS.NUM_CLASSES", "1"]
    cfg = load_yacs_config(ATSS_YAML, opts)
    with pytest.raises(ClassCountError) as e:
        check_class_counts(cfg, [one_class], [], set_by=_set_by(ATSS_YAML, opts))
    msg = str(e.value)
    assert "MODEL.RETINANET.NUM_CLASSES is 5" in msg and "Set MODEL.RETINANET.NUM_CLASSES 1" in msg
    assert "ATSS reads MODEL.RETINANET.NUM_CLASSES; MODEL.ROI_HEADS.NUM_CLASSES is not used" in msg
    # Data that agrees with the key ATSS reads: the unread key, set otherwise, is still wrong.
    opts = ["MODEL.ROI_HEADS.NUM_CLASSES", "1"]
    cfg = load_yacs_config(ATSS_YAML, opts)
    with pytest.raises(ClassCountError) as e:
        check_class_counts(cfg, *SYNTHETIC, set_by=_set_by(ATSS_YAML, opts))
    msg = str(e.value)
    assert "MODEL.ROI_HEADS.NUM_CLASSES is 1 (the command line sets it)" in msg
    assert "ATSS does not read it: it reads MODEL.RETINANET.NUM_CLASSES, which is 5" in msg
    # Detectron2's default of the unread key (80, set nowhere) is not an error.
    check_class_counts(load_yacs_config(ATSS_YAML, []), *SYNTHETIC, set_by=_set_by(ATSS_YAML, []))


def test_unread_key_set_by_a_yaml_of_the_chain(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f'_BASE_: "{ATSS_YAML}"\nMODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 3\n')
    cfg = load_yacs_config(str(child), [])
    with pytest.raises(ClassCountError, match="child.yaml' sets it"):
        check_class_counts(cfg, *SYNTHETIC, set_by=_set_by(str(child), []))


def test_test_classes_must_be_the_training_classes(one_class, tmp_path):
    cfg = load_yacs_config(RCNN_YAML, ["MODEL.ROI_HEADS.NUM_CLASSES", "1"])
    with pytest.raises(ClassCountError) as e:
        check_class_counts(cfg, [one_class], ["synthetic_mini_val"])
    msg = str(e.value)
    assert "Test dataset 'synthetic_mini_val' and training dataset 'cc_one_class'" in msg
    assert "['circle', 'square', 'triangle', 'cross', 'star']" in msg and "['shape']" in msg
    # The same names in another order are other classes (scored by position).
    names = ["square", "circle", "triangle", "cross", "star"]
    register_coco_format("cc_reordered", *write_coco_variant(tmp_path, "reordered", names))
    prepare_datasets(["cc_reordered"])
    cfg = load_yacs_config(RCNN_YAML, [])
    with pytest.raises(ClassCountError, match="the same names in another order"):
        check_class_counts(cfg, ["synthetic_mini_train"], ["cc_reordered"])
    with pytest.raises(ClassCountError, match="Training dataset 'cc_reordered' and training"):
        check_class_counts(cfg, ["synthetic_mini_train", "cc_reordered"], [])


def test_eval_only_checks_the_test_data(one_class):
    """--eval-only has no training data: the count must fit the test datasets."""
    cfg = load_yacs_config(RCNN_YAML, [])
    with pytest.raises(ClassCountError, match="but test dataset 'cc_one_class' has 1 class"):
        check_class_counts(cfg, [], [one_class])
    check_class_counts(cfg, [], ["synthetic_mini_val"])


def test_dataset_without_class_names_is_skipped(caplog):
    name = "cc_no_metadata"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: [])
    assert MetadataCatalog.get(name).get("thing_classes") is None
    cfg = load_yacs_config(RCNN_YAML, [])
    with caplog.at_level(logging.DEBUG, logger="d2_sampling.engine.class_count"):
        check_class_counts(cfg, [name], [])
    assert "has no thing_classes metadata" in caplog.text
    cfg = load_yacs_config(RCNN_YAML, ["MODEL.ROI_HEADS.NUM_CLASSES", "-1"])
    with pytest.raises(ClassCountError, match="no dataset of the run has class names"):
        check_class_counts(cfg, [name], [])


def test_lazy_config_keys(one_class):
    retina = str(QUICK / "retinanet_tiny_FPN_instant_test.py")
    cfg = load_lazy_config(retina, [f"dataloader.train.dataset.names={one_class}"])
    with pytest.raises(ClassCountError) as e:
        check_class_counts(cfg, [one_class], [])
    assert "model.num_classes is 5" in str(e.value) and "Set model.num_classes=1" in str(e.value)
    # -1 sets model.num_classes; model.head.num_classes follows it ("${..num_classes}").
    cfg = load_lazy_config(retina, ["model.num_classes=-1"])
    check_class_counts(cfg, [one_class], [])
    assert cfg.model.num_classes == 1 and cfg.model.head.num_classes == 1

    mask = str(QUICK / "mask_rcnn_tiny_FPN_ohem_instant_test.py")
    cfg = load_lazy_config(mask, ["model.roi_heads.num_classes=1"])
    # The mask head's count is a number of its own in this config: it is checked too.
    with pytest.raises(ClassCountError, match="model.roi_heads.mask_head.num_classes is 5"):
        check_class_counts(cfg, [one_class], [])
    cfg = load_lazy_config(
        mask, ["model.roi_heads.num_classes=1", "model.roi_heads.mask_head.num_classes=1"]
    )
    check_class_counts(cfg, [one_class], [])
    # 1 also fits a class-agnostic mask head with more classes.
    check_class_counts(
        load_lazy_config(mask, ["model.roi_heads.mask_head.num_classes=1"]), *SYNTHETIC
    )


def test_unknown_meta_architecture_is_a_key_error():
    cfg = load_yacs_config(RCNN_YAML, ["MODEL.META_ARCHITECTURE", "NoSuchArch"])
    with pytest.raises(KeyError, match="NoSuchArch"):
        check_class_counts(cfg, *SYNTHETIC)
