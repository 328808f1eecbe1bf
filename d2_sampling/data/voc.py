"""
Pascal VOC-format datasets: any folder in VOC's layout, with any classes.

    DIR/Annotations/<id>.xml         one VOC xml per image (size, objects: name, bndbox, difficult)
    DIR/JPEGImages/<id>.jpg          the images (else the xml's <filename> in that folder)
    DIR/ImageSets/Main/<split>.txt   the ids of each split, one per line
    DIR/classes.txt                  optional: the class names, one per line, in order

Parsing follows Detectron2's ``load_voc_instances`` (``detectron2/data/datasets/pascal_voc.py``):
VOC coordinates are 1-based pixel indices, so ``xmin``/``ymin`` lose 1 and a box
``(1, 1, W, H)`` covers the whole image ``[0, W] x [0, H]``; "difficult" objects are trained on.
It departs from Detectron2 where Detectron2 assumes the 20 VOC classes and no defects:

- The classes are given, or read from ``DIR/classes.txt``, or else are the sorted names found in
  all of ``DIR/Annotations`` (every split's xml, so train and test get the same class order).
  A name outside the given list is an error naming the xml and the object.
- A box with ``xmax <= xmin`` or ``ymax <= ymin`` in the xml has zero (or negative) size: it
  is kept at its raw coordinates so the shared check drops it (Detectron2's shift by 1 would
  turn a clicked-but-not-dragged box into a 1-pixel one). Boxes outside the image are dropped
  or clipped by the same check (``checks.py``), with one warning that counts them.
- Malformed xml, a missing xml or split file, a missing or unreadable image: errors naming it.
- Each annotation keeps its ``difficult`` flag (0/1), which the VOC evaluator uses as VOC does.
"""

import logging
import os
import xml.etree.ElementTree as ET
from typing import List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .checks import DatasetError, check_dataset_dicts

__all__ = ["VOC_CLASSES_FILE", "load_voc_format", "register_voc_format", "voc_class_names"]

logger = logging.getLogger(__name__)

VOC_CLASSES_FILE = "classes.txt"
# Detectron2's PascalVOCDetectionEvaluator picks its AP by the year: 2007 is the 11-point AP of
# VOC2007, anything later the area under the whole precision/recall curve (VOC2010 on).
_VOC_YEAR = 2012


def _parse(xml_file: str) -> ET.ElementTree:
    if not os.path.isfile(xml_file):
        raise FileNotFoundError(f"VOC annotation file not found: {xml_file!r}")
    try:
        return ET.parse(xml_file)
    except ET.ParseError as e:
        raise DatasetError(f"Malformed VOC xml {xml_file!r}: {e}") from e


def _text(node, path: str, xml_file: str, what: str) -> str:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise DatasetError(f"Malformed VOC xml {xml_file!r}: {what} has no <{path}>")
    return found.text.strip()


def _number(node, path: str, xml_file: str, what: str) -> float:
    text = _text(node, path, xml_file, what)
    try:
        return float(text)
    except ValueError:
        raise DatasetError(
            f"Malformed VOC xml {xml_file!r}: {what} <{path}> is {text!r}, not a number"
        ) from None


def _check_names(names: Sequence[str], source: str) -> List[str]:
    names = [str(n).strip() for n in names]
    if not names or not all(names):
        raise DatasetError(f"VOC class list from {source} is empty or has an empty name: {names}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DatasetError(f"VOC class list from {source} repeats {duplicates}")
    return names


def voc_class_names(dirname: str, class_names: Optional[Sequence[str]] = None) -> List[str]:
    """
    The classes of the VOC-format dataset in ``dirname``, in order: ``class_names`` when given,
    else the lines of ``dirname/classes.txt`` when it exists, else the sorted object names of
    every xml in ``dirname/Annotations`` (all splits, so every split of a folder gets the same
    order).

    Raises:
        FileNotFoundError: no ``Annotations`` folder, or no xml in it.
        DatasetError: an empty or repeated name, malformed xml (the message names the file).
    """
    if class_names is not None:
        return _check_names(class_names, "the given list")
    classes_file = os.path.join(dirname, VOC_CLASSES_FILE)
    if os.path.isfile(classes_file):
        with open(classes_file) as f:
            return _check_names([line for line in f if line.strip()], repr(classes_file))
    ann_dir = os.path.join(dirname, "Annotations")
    if not os.path.isdir(ann_dir):
        raise FileNotFoundError(f"VOC annotation folder not found: {ann_dir!r}")
    files = sorted(f for f in os.listdir(ann_dir) if f.endswith(".xml"))
    if not files:
        raise FileNotFoundError(f"No .xml file in the VOC annotation folder {ann_dir!r}")
    names = set()
    for file in files:
        xml_file = os.path.join(ann_dir, file)
        for k, obj in enumerate(_parse(xml_file).findall("object")):
            names.add(_text(obj, "name", xml_file, f"object #{k}"))
    return sorted(names)


def _split_ids(dirname: str, split: str) -> List[str]:
    split_file = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(split_file):
        main = os.path.dirname(split_file)
        known = (
            sorted(f[:-4] for f in os.listdir(main) if f.endswith(".txt"))
            if os.path.isdir(main)
            else "no ImageSets/Main folder"
        )
        raise FileNotFoundError(f"VOC split file not found: {split_file!r} (splits: {known})")
    with open(split_file) as f:
        # VOC's per-class split files add a column ("<id> 1"); the id comes first.
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise DatasetError(f"VOC split file {split_file!r} lists no image")
    return ids


def load_voc_format(dirname: str, split: str, class_names: Sequence[str]) -> List[dict]:
    """
    Parse split ``split`` of the VOC-format folder ``dirname`` into Detectron2's dataset dicts
    (boxes ``XYXY_ABS``, ``category_id`` the index in ``class_names``, ``image_id`` the VOC id,
    each annotation with its ``difficult`` flag). Nothing is dropped here; see the module
    docstring and ``checks.check_dataset_dicts``.

    Raises:
        FileNotFoundError: the split file or an xml does not exist.
        DatasetError: malformed xml, an object whose class is not in ``class_names`` (the
            message names the xml and the object).
    """
    class_index = {c: i for i, c in enumerate(class_names)}
    image_dir = os.path.join(dirname, "JPEGImages")
    dicts = []
    for file_id in _split_ids(dirname, split):
        xml_file = os.path.join(dirname, "Annotations", f"{file_id}.xml")
        tree = _parse(xml_file)
        width = int(_number(tree, "size/width", xml_file, "the image"))
        height = int(_number(tree, "size/height", xml_file, "the image"))
        if width <= 0 or height <= 0:
            raise DatasetError(f"VOC xml {xml_file!r}: image size {width}x{height} is not positive")
        file_name = os.path.join(image_dir, f"{file_id}.jpg")
        listed = tree.findtext("filename")
        if not os.path.isfile(file_name) and listed and listed.strip():
            # Not VOC's own naming, e.g. PNG images: the xml says which file it annotates.
            file_name = os.path.join(image_dir, listed.strip())
        annotations = []
        for k, obj in enumerate(tree.findall("object")):
            what = f"object #{k}"
            name = _text(obj, "name", xml_file, what)
            if name not in class_index:
                raise DatasetError(
                    f"VOC xml {xml_file!r}: {what} has class {name!r}, which is not one of the "
                    f"dataset's classes {list(class_names)}"
                )
            box = [_number(obj, f"bndbox/{c}", xml_file, what) for c in ("xmin", "ymin")]
            box += [_number(obj, f"bndbox/{c}", xml_file, what) for c in ("xmax", "ymax")]
            if box[2] > box[0] and box[3] > box[1]:
                box[0] -= 1.0  # 1-based pixel indices to coordinates, as Detectron2
                box[1] -= 1.0
            difficult = obj.findtext("difficult")
            annotations.append(
                {
                    "category_id": class_index[name],
                    "bbox": box,
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "difficult": int(difficult.strip() or 0) if difficult else 0,
                }
            )
        dicts.append(
            {
                "file_name": file_name,
                "image_id": file_id,
                "height": height,
                "width": width,
                "annotations": annotations,
            }
        )
    return dicts


def _load_voc(name: str, dirname: str, split: str, class_names: Sequence[str]) -> List[dict]:
    dicts = load_voc_format(dirname, split, class_names)
    logger.info(f"Loaded {len(dicts)} images of VOC-format dataset {name!r} from {dirname}")
    return check_dataset_dicts(dicts, name)


def register_voc_format(
    name: str, dirname: str, split: str, class_names: Optional[Sequence[str]] = None
) -> None:
    """
    Register split ``split`` of the VOC-format folder ``dirname`` under ``name``.

    The folder and the split file are checked and the classes read now (see
    ``voc_class_names``), so a typo fails before training starts; the annotations are parsed
    and checked (``checks.check_dataset_dicts``) each time the dataset is loaded. The metadata
    holds ``thing_classes`` and what Detectron2's ``PascalVOCDetectionEvaluator`` reads
    (``dirname``, ``split``, ``year``; the year, 2012, selects VOC's all-point AP). Registering
    the same name twice with the same folder, split and classes is a no-op; otherwise, an error.

    Raises:
        FileNotFoundError: ``dirname``, its ``Annotations`` folder or the split file is missing.
        DatasetError: malformed xml or class list (naming the file).
        ValueError: ``name`` is taken by another dataset.
    """
    dirname = os.path.abspath(os.fspath(dirname))
    if not os.path.isdir(dirname):
        raise FileNotFoundError(f"Folder of VOC-format dataset {name!r} not found: {dirname!r}")
    _split_ids(dirname, split)
    classes = voc_class_names(dirname, class_names)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if (meta.get("dirname"), meta.get("split"), meta.get("thing_classes")) == (
            dirname,
            split,
            classes,
        ):
            return
        raise ValueError(
            f"Dataset name {name!r} is already registered (dirname={meta.get('dirname')!r}, "
            f"split={meta.get('split')!r}); choose another name"
        )
    DatasetCatalog.register(name, lambda: _load_voc(name, dirname, split, classes))
    MetadataCatalog.get(name).set(
        thing_classes=list(classes),
        dirname=dirname,
        split=split,
        year=_VOC_YEAR,
        evaluator_type="pascal_voc",
        d2_sampling_format="voc",
    )
