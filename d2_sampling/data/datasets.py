"""
Dataset registration: the built-in synthetic splits and any COCO-format dataset.

``register_synthetic_datasets()`` runs on ``import d2_sampling``; generation happens on first
use (``prepare_datasets`` or the first ``DatasetCatalog.get``). ``register_coco_format`` turns a
COCO json + image folder into a Detectron2 dataset, with errors that name the bad file.
"""

import json
import logging
import os
from typing import Iterable

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_SPLITS,
    generate_synthetic_dataset,
    synthetic_paths,
)

__all__ = ["register_synthetic_datasets", "register_coco_format", "prepare_datasets"]

logger = logging.getLogger(__name__)
_REQUIRED_KEYS = ("images", "annotations", "categories")


def _load_synthetic(name):
    json_file, image_root = synthetic_paths(name)
    generate_synthetic_dataset(name)
    return load_coco_json(str(json_file), str(image_root), name)


def register_synthetic_datasets():
    """Register every split of ``SYNTHETIC_SPLITS`` (idempotent; generates nothing)."""
    for name in SYNTHETIC_SPLITS:
        if name in DatasetCatalog.list():
            continue
        json_file, image_root = synthetic_paths(name)
        DatasetCatalog.register(name, lambda name=name: _load_synthetic(name))
        MetadataCatalog.get(name).set(
            json_file=str(json_file),
            image_root=str(image_root),
            evaluator_type="coco",
            thing_classes=list(SYNTHETIC_CLASSES),
        )


def validate_coco_json(json_file: str) -> dict:
    """
    Parse ``json_file`` and check it has the COCO detection layout.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not valid json, or lacks COCO's top-level keys.
    """
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO json file not found: {json_file!r}")
    try:
        with open(json_file) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"Malformed COCO json {json_file!r}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"Malformed COCO json {json_file!r}: top level is not an object")
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"Malformed COCO json {json_file!r}: missing key(s) {missing}")
    for key in _REQUIRED_KEYS:
        if not isinstance(data[key], list):
            raise ValueError(f"Malformed COCO json {json_file!r}: {key!r} is not a list")
    for i, ann in enumerate(data["annotations"]):
        for k in ("image_id", "bbox", "category_id"):
            if k not in ann:
                raise ValueError(f"Malformed COCO json {json_file!r}: annotation #{i} has no {k!r}")
        if len(ann["bbox"]) != 4:
            raise ValueError(
                f"Malformed COCO json {json_file!r}: annotation #{i} bbox {ann['bbox']} "
                "is not [x, y, w, h]"
            )
    return data


def _load_coco_format(name, json_file, image_root):
    validate_coco_json(json_file)
    return load_coco_json(json_file, image_root, name)


def register_coco_format(name: str, json_file: str, image_root: str) -> None:
    """
    Register a COCO-format dataset under ``name``.

    Files are checked now (existence, json layout), so a typo fails before training starts.
    Registering the same name twice with the same files is a no-op; with other files, an error.

    Raises:
        FileNotFoundError: ``json_file`` or ``image_root`` does not exist.
        ValueError: the json is malformed, or ``name`` is taken by another dataset.
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"Image folder of dataset {name!r} not found: {image_root!r}")
    validate_coco_json(json_file)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
            return
        raise ValueError(
            f"Dataset name {name!r} is already registered (json_file="
            f"{meta.get('json_file')!r}); choose another name"
        )
    DatasetCatalog.register(name, lambda: _load_coco_format(name, json_file, image_root))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco")


def prepare_datasets(names: Iterable[str]) -> None:
    """
    Make sure every dataset in ``names`` can be loaded: generate synthetic splits, check that
    registered COCO files exist. Call before building data loaders or evaluators.

    Raises:
        KeyError: a name that no one registered.
        FileNotFoundError: a registered dataset whose files are missing.
    """
    registered = set(DatasetCatalog.list())
    for name in names:
        if name not in registered:
            raise KeyError(
                f"Dataset {name!r} is not registered. Register a COCO json with "
                "DATASETS.COCO_FORMAT [[name, json, image_root]] (yacs), "
                "--coco-dataset NAME JSON IMAGE_ROOT (train_net.py), or use one of: "
                f"{sorted(SYNTHETIC_SPLITS)}"
            )
        if name in SYNTHETIC_SPLITS:
            generate_synthetic_dataset(name)
            continue
        meta = MetadataCatalog.get(name)
        json_file, image_root = meta.get("json_file"), meta.get("image_root")
        if json_file is not None and not os.path.isfile(json_file):
            raise FileNotFoundError(f"Annotation file of dataset {name!r} not found: {json_file!r}")
        if image_root is not None and not os.path.isdir(image_root):
            raise FileNotFoundError(f"Image folder of dataset {name!r} not found: {image_root!r}")
