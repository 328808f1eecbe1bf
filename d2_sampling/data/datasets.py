"""
Dataset registration: the built-in synthetic splits and any COCO-format dataset, and
``prepare_datasets``, which readies and checks every dataset before training.

``register_synthetic_datasets()`` runs on ``import d2_sampling``; generation happens on first
use (``prepare_datasets`` or the first ``DatasetCatalog.get``). ``register_coco_format`` turns a
COCO json + image folder into a Detectron2 dataset, with errors that name the bad file. Every
dataset registered here (and VOC-format ones, ``voc.py``) is checked each time it is loaded
(``checks.py``: images exist and decode, bad boxes dropped or clipped with one warning).
"""

import difflib
import json
import logging
import os
from typing import Iterable, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.utils import comm

from .checks import check_dataset_dicts, check_images
from .synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_SPLITS,
    generate_synthetic_dataset,
    synthetic_paths,
)

__all__ = [
    "format_datasets",
    "prepare_datasets",
    "register_coco_format",
    "register_synthetic_datasets",
    "validate_coco_json",
]

logger = logging.getLogger(__name__)
_REQUIRED_KEYS = ("images", "annotations", "categories")


def _load_synthetic(name):
    json_file, image_root = synthetic_paths(name)
    generate_synthetic_dataset(name)
    return check_dataset_dicts(load_coco_json(str(json_file), str(image_root), name), name)


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
            d2_sampling_format="synthetic",
        )


def validate_coco_json(json_file: str) -> dict:
    """
    Parse ``json_file`` and check it has the COCO detection layout: the top-level keys, each
    image's ``id``, ``file_name``, ``height`` and ``width``, each annotation's ``image_id``,
    ``bbox`` (4 numbers) and a ``category_id`` that ``categories`` lists.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not valid json, lacks COCO's keys, or an annotation's category is not
            in ``categories``; the message names the file (and the image or annotation).
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
    for i, img in enumerate(data["images"]):
        for k in ("id", "file_name", "height", "width"):
            if k not in img:
                raise ValueError(f"Malformed COCO json {json_file!r}: image #{i} has no {k!r}")
    category_ids = set()
    for i, cat in enumerate(data["categories"]):
        for k in ("id", "name"):
            if k not in cat:
                raise ValueError(f"Malformed COCO json {json_file!r}: category #{i} has no {k!r}")
        category_ids.add(cat["id"])
    for i, ann in enumerate(data["annotations"]):
        for k in ("image_id", "bbox", "category_id"):
            if k not in ann:
                raise ValueError(f"Malformed COCO json {json_file!r}: annotation #{i} has no {k!r}")
        if len(ann["bbox"]) != 4:
            raise ValueError(
                f"Malformed COCO json {json_file!r}: annotation #{i} bbox {ann['bbox']} "
                "is not [x, y, w, h]"
            )
        if ann["category_id"] not in category_ids:
            raise ValueError(
                f"COCO json {json_file!r}: annotation #{i} (id {ann.get('id')!r}, image_id "
                f"{ann['image_id']!r}) has category_id {ann['category_id']!r}, which "
                f"'categories' does not list (ids {sorted(category_ids)})"
            )
    return data


def _load_coco_format(name, json_file, image_root):
    validate_coco_json(json_file)
    return check_dataset_dicts(load_coco_json(json_file, image_root, name), name)


def register_coco_format(name: str, json_file: str, image_root: str) -> None:
    """
    Register a COCO-format dataset under ``name``.

    Files are checked now (existence, json layout), so a typo fails before training starts;
    images and boxes each time the dataset is loaded (``checks.check_dataset_dicts``). Paths are
    made absolute. Registering the same name twice with the same files is a no-op; with other
    files, an error.

    Raises:
        FileNotFoundError: ``json_file`` or ``image_root`` does not exist.
        ValueError: the json is malformed, or ``name`` is taken by another dataset.
    """
    json_file = os.path.abspath(os.fspath(json_file))
    image_root = os.path.abspath(os.fspath(image_root))
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
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="coco", d2_sampling_format="coco"
    )


def format_datasets() -> List[str]:
    """The names registered by ``register_coco_format`` and ``register_voc_format``, sorted."""
    return sorted(
        name
        for name in DatasetCatalog.list()
        if MetadataCatalog.get(name).get("d2_sampling_format") in ("coco", "voc")
    )


def _not_registered(name: str) -> KeyError:
    registered = format_datasets()
    close = difflib.get_close_matches(name, DatasetCatalog.list(), n=3)
    return KeyError(
        f"Dataset {name!r} is not registered."
        + (f" Did you mean {close}?" if close else "")
        + f" Registered COCO/VOC-format datasets: {registered or 'none'}; built-in synthetic: "
        f"{sorted(SYNTHETIC_SPLITS)}. Register a COCO json with --coco-dataset NAME JSON "
        "IMAGE_ROOT or DATASETS.COCO_FORMAT [[name, json, image_root]], a Pascal VOC folder "
        "with --voc-dataset NAME DIR SPLIT or DATASETS.VOC_FORMAT [[name, dir, split]]. "
        "Detectron2's own names (coco_2017_train, voc_2007_trainval, ...) read "
        "$DETECTRON2_DATASETS."
    )


def _check(name: str) -> None:
    if name in SYNTHETIC_SPLITS:
        generate_synthetic_dataset(name)
    meta = MetadataCatalog.get(name)
    json_file, image_root = meta.get("json_file"), meta.get("image_root")
    if json_file is not None and not os.path.isfile(json_file):
        raise FileNotFoundError(f"Annotation file of dataset {name!r} not found: {json_file!r}")
    if image_root is not None and not os.path.isdir(image_root):
        raise FileNotFoundError(f"Image folder of dataset {name!r} not found: {image_root!r}")
    dicts = DatasetCatalog.get(name)  # ours check themselves as they load
    if meta.get("d2_sampling_format") is None:
        # Registered by someone else (Detectron2's built-in names): their loader is theirs, and
        # Detectron2's mapper clips and drops bad boxes in training; check that images decode.
        check_images(dicts, name)


def prepare_datasets(names: Iterable[str]) -> None:
    """
    Make every dataset in ``names`` ready and check it before training: generate synthetic
    splits, load each dataset, which checks it (every image exists and decodes, cached; bad
    boxes dropped or clipped with one warning per dataset; see ``checks.py``). Datasets
    registered by others get the image check. Call before building data loaders or evaluators.

    In a distributed job, the first worker of each machine checks while the others wait; they
    find the results in the cache when they load the datasets.

    Raises:
        KeyError: a name that no one registered (the message lists the registered names).
        FileNotFoundError: a registered dataset whose files are missing.
        DatasetError: images that are missing or do not decode, malformed annotations.
    """
    names = list(dict.fromkeys(names))
    registered = set(DatasetCatalog.list())
    for name in names:
        if name not in registered:
            raise _not_registered(name)
    if comm.get_local_rank() == 0:
        for name in names:
            _check(name)
    comm.synchronize()
