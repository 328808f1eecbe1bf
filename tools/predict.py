#!/usr/bin/env python
"""
Run a trained detector on images and write what it finds: one COCO-format results json for all
the images, and one PNG per image drawn with Detectron2's ``Visualizer``.

    python tools/predict.py --config-file CONFIG --weights output/x/model_final.pth \\
        --input IMAGE_OR_FOLDER [IMAGE_OR_FOLDER ...] --output DIR \\
        [--score-threshold 0.5] [--dataset NAME] [--opts KEY VALUE ...]

    --config-file   the config it was trained with: yacs .yaml or LazyConfig .py
    --weights       the checkpoint (train_net.py's OUTPUT_DIR/model_final.pth); it must fit the
                    model exactly: missing, unexpected or mis-shaped weights are an error
    --input         images and folders (a folder: its images, not recursive, sorted by name)
    --output        the folder to write into (created)
    --dataset       whose class names and category ids to use (default: the config's first
                    test dataset); register it with --coco-dataset / --voc-dataset as in
                    train_net.py. The model's class count must be its number of classes, as
                    train_net.py checks (-1 takes it from the dataset)
    --score-threshold   keep detections with at least this score (also the model's test-time
                    threshold, as Detectron2's demo does); 0 keeps every detection
    --opts          config overrides, last: KEY VALUE pairs (yacs) or key=value (LazyConfig),
                    the training run's that change the model

A wrong path, config key, dataset or checkpoint is one message, ``predict.py: error: ...``, exit
status 2 (``--debug``: the traceback), as train_net.py.

Writes ``DIR/predictions.json`` and ``DIR/<image name>.png``. The json is a COCO results list,
one entry per detection: ``image_id``, ``file_name``, ``category_id``, ``bbox`` ``[x, y, width,
height]`` in the input image's pixels, ``score``. ``category_id`` is the dataset's own (COCO
json ids via ``thing_dataset_id_to_contiguous_id``), else the class index (VOC format).
``image_id`` is the image's id in the dataset when every input image is one of its images, so
pycocotools' ``COCO.loadRes`` scores the file against that dataset; otherwise 1..N in input
order.

The model sees what evaluation feeds it: the config's test-time resize (``INPUT.MIN_SIZE_TEST``
/ ``MAX_SIZE_TEST``, or the LazyConfig's ``dataloader.test.mapper.augmentations``) and input
format (``INPUT.FORMAT`` / ``dataloader.test.mapper.image_format``).
"""

import argparse
import json
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.catalog import Metadata
from detectron2.data.detection_utils import build_augmentation, read_image
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer
from omegaconf import OmegaConf

import d2_sampling  # noqa: F401  (registers models and datasets)
from d2_sampling.data import prepare_datasets
from d2_sampling.engine import UserError, check_class_counts, load_config
from d2_sampling.engine.errors import (
    DEBUG_ENV,
    EXIT_USER_ERROR,
    debug_enabled,
    user_error_message,
    user_errors,
)
from d2_sampling.engine.setup import (
    add_dataset_arguments,
    dataset_names,
    register_cli_datasets,
    register_cli_voc_datasets,
)

logger = logging.getLogger("d2_sampling.predict")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class CheckpointMismatchError(UserError):
    """The checkpoint's weights do not fit the model (a different config or class count)."""


class StrictCheckpointer(DetectionCheckpointer):
    """
    ``DetectionCheckpointer`` that refuses a checkpoint which does not fit the model. Training
    may start from partial weights (ImageNet backbones) and Detectron2 only logs what it could
    not load; a predictor with missing or mis-shaped weights would silently predict with random
    layers.
    """

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        problems = []
        if incompatible.missing_keys:
            problems.append(_listed("missing from the checkpoint", incompatible.missing_keys))
        if incompatible.unexpected_keys:
            problems.append(_listed("not in the model", incompatible.unexpected_keys))
        if incompatible.incorrect_shapes:
            shapes = [
                f"{k} (checkpoint {tuple(c)}, model {tuple(m)})"
                for k, c, m in incompatible.incorrect_shapes
            ]
            problems.append(_listed("of another shape", shapes))
        if problems:
            raise CheckpointMismatchError(
                f"Checkpoint {self._path!r} does not fit the model of this config: "
                + "; ".join(problems)
                + ". Use the config (and overrides, e.g. the number of classes) it was trained "
                "with."
            )
        return incompatible

    def load(self, path, checkpointables=None):
        self._path = path
        return super().load(path, checkpointables=[])


def _listed(what: str, keys: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{len(keys)} weight(s) {what}: {shown}{more}"


def check_weights_path(path: str) -> None:
    """A local checkpoint file must exist (URLs such as ``detectron2://`` resolve later)."""
    if not path:
        raise ValueError("--weights: no checkpoint given")
    if "://" not in path and not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path!r}")


def image_paths(inputs: Sequence[str]) -> List[str]:
    """
    The images of ``inputs``: files as given, folders expanded to their images (by extension,
    not recursive, sorted by name).

    Raises:
        FileNotFoundError: an input that does not exist, or a folder without images (named).
    """
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, f)
                for f in os.listdir(item)
                if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(item, f))
            )
            if not found:
                raise FileNotFoundError(
                    f"--input folder {item!r} has no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"--input image or folder not found: {item!r}")
    return paths


def png_names(paths: Sequence[str]) -> List[str]:
    """``<name>.png`` per image; a name seen before gets ``_2``, ``_3``, ... (a/x.jpg, b/x.jpg)."""
    names, seen = [], {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.png" if seen[stem] == 1 else f"{stem}_{seen[stem]}.png")
    return names


class Predictor:
    """
    Detectron2's ``DefaultPredictor`` for both config systems: the model in eval mode, the
    config's test-time augmentations and input format, one image per call.

    Args:
        model (nn.Module): a Detectron2 detector with its weights loaded.
        augmentations (list[Augmentation]): test-time transforms (the resize).
        input_format (str): "BGR" or "RGB", the channel order the model was trained on.
    """

    def __init__(self, model, augmentations, input_format: str):
        if input_format not in ("BGR", "RGB"):
            raise ValueError(f"input format must be 'BGR' or 'RGB', got {input_format!r}")
        self.model = model.eval()
        self.augmentations = T.AugmentationList(list(augmentations))
        self.input_format = input_format

    @classmethod
    def from_config(cls, cfg, weights: str) -> "Predictor":
        """Build ``cfg``'s model (yacs ``CfgNode`` or LazyConfig) and load ``weights`` strictly."""
        if isinstance(cfg, CfgNode):
            model = build_model(cfg)
            augmentations = build_augmentation(cfg, is_train=False)
            input_format = cfg.INPUT.FORMAT
        else:
            model = instantiate(cfg.model).to(cfg.train.device)
            augs = OmegaConf.select(cfg, "dataloader.test.mapper.augmentations", default=None)
            augmentations = instantiate(augs) if augs is not None else []
            input_format = OmegaConf.select(
                cfg, "dataloader.test.mapper.image_format", default=None
            ) or cfg.model.get("input_format", "BGR")
        StrictCheckpointer(model).load(weights)
        return cls(model, augmentations, input_format)

    def set_score_threshold(self, threshold: float) -> None:
        """The test-time score threshold of every head that has one (as Detectron2's demo)."""
        for module in self.model.modules():
            if hasattr(module, "test_score_thresh"):
                module.test_score_thresh = threshold

    def __call__(self, image: np.ndarray):
        """
        Args:
            image (ndarray): (H, W, 3) uint8, in ``self.input_format`` channel order.

        Returns:
            Instances: on CPU, ``pred_boxes`` in ``image``'s pixels, ``scores``, ``pred_classes``.
        """
        height, width = image.shape[:2]
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        with torch.no_grad():
            outputs = self.model([{"image": tensor, "height": height, "width": width}])[0]
        return outputs["instances"].to("cpu")


def load_dataset(name: str):
    """
    ``(metadata, dicts)`` of a registered dataset, loaded and checked as for training (so a
    COCO-format dataset's metadata holds its category ids). ``dicts`` is None when the
    dataset's files are not on this machine (Detectron2's ``coco_2017_val`` without
    ``$DETECTRON2_DATASETS``): class names and ids then come from the metadata alone.
    """
    if name not in DatasetCatalog.list():
        prepare_datasets([name])  # raises the KeyError that lists the registered names
    try:
        dicts = DatasetCatalog.get(name)  # ours are checked as they load (synthetic: generated)
    except FileNotFoundError as e:
        logger.warning(f"Dataset {name!r} is not here ({e}); using its metadata only")
        dicts = None
    return MetadataCatalog.get(name), dicts


def image_ids(paths: Sequence[str], dicts: Optional[List[dict]]) -> list:
    """The dataset's ``image_id`` of each path if every path is one of its images, else 1..N."""
    if dicts:
        by_path = {os.path.realpath(d["file_name"]): d["image_id"] for d in dicts}
        ids = [by_path.get(os.path.realpath(p)) for p in paths]
        if all(i is not None for i in ids):
            return ids
        logger.info("Not every image is in the dataset: image ids are 1..N in input order")
    return list(range(1, len(paths) + 1))


def coco_results(instances, image_id, file_name: str, category_ids: Optional[Dict[int, int]]):
    """One COCO results entry per detection (``bbox`` XYWH, ``category_id`` the dataset's)."""
    boxes = instances.pred_boxes.tensor.numpy().astype(float)
    boxes[:, 2:] -= boxes[:, :2]
    results = []
    for box, score, cls in zip(boxes, instances.scores.tolist(), instances.pred_classes.tolist()):
        results.append(
            {
                "image_id": image_id,
                "file_name": file_name,
                "category_id": category_ids[cls] if category_ids else cls,
                "bbox": [round(float(v), 2) for v in box],
                "score": round(float(score), 5),
            }
        )
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Detect objects in images with a trained config + checkpoint; write a COCO "
        "results json and one drawn PNG per image.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[1],
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help=".yaml or .py")
    parser.add_argument("--weights", required=True, metavar="CHECKPOINT", help="e.g. .pth")
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH", help="images/folders")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write into")
    parser.add_argument(
        "--score-threshold", type=float, default=0.5, help="keep scores >= this (default 0.5)"
    )
    parser.add_argument(
        "--dataset", metavar="NAME", help="class names / ids (default: the config's test set)"
    )
    add_dataset_arguments(parser, coco=True, voc=True)
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of a user error instead of one message (also {DEBUG_ENV}=1)",
    )
    parser.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides, last: KEY VALUE pairs (yacs) or key=value (LazyConfig)",
    )
    return parser


def predict(args) -> List[dict]:
    """Run ``build_parser()``'s ``args``; returns the COCO results written."""
    setup_logger(name="d2_sampling", abbrev_name="d2s")
    setup_logger(name="fvcore")
    with user_errors():
        # Cheap checks first: a typo in a path fails before anything is loaded.
        paths = image_paths(args.input)
        check_weights_path(args.weights)
        pngs = [os.path.join(args.output, n) for n in png_names(paths)]
        overwritten = {os.path.realpath(p) for p in paths} & {os.path.realpath(p) for p in pngs}
        if overwritten:
            raise ValueError(
                f"--output {args.output!r} would overwrite input images: {overwritten}"
            )

        register_cli_datasets(args.coco_dataset or [])
        register_cli_voc_datasets(args.voc_dataset or [])
        cfg = load_config(args.config_file, args.opts)
        name = args.dataset or next(iter(dataset_names(cfg, train=False)), None)
        metadata, dicts = load_dataset(name) if name else (Metadata(), None)
        if name:
            # train_net.py's rule: the model's class count is the dataset's (-1: filled from it).
            cfg = check_class_counts(cfg, [], [name])
    id_map = metadata.get("thing_dataset_id_to_contiguous_id")
    category_ids = {v: k for k, v in id_map.items()} if id_map else None

    predictor = Predictor.from_config(cfg, args.weights)
    predictor.set_score_threshold(args.score_threshold)
    os.makedirs(args.output, exist_ok=True)
    results = []
    for path, image_id, png in zip(paths, image_ids(paths, dicts), pngs):
        image = read_image(path, format=predictor.input_format)
        instances = predictor(image)
        instances = instances[instances.scores >= args.score_threshold]
        results += coco_results(instances, image_id, path, category_ids)
        rgb = image if predictor.input_format == "RGB" else image[:, :, ::-1]
        Visualizer(rgb, metadata).draw_instance_predictions(instances).save(png)
        logger.info(f"{path}: {len(instances)} detections -> {png}")

    json_file = os.path.join(args.output, "predictions.json")
    with open(json_file, "w") as f:
        json.dump(results, f)
    logger.info(f"{len(results)} detections in {len(paths)} images -> {json_file}")
    return results


def cli(argv=None) -> int:
    """The exit status: 0, or for a user error (a path, the config, the weights) its message, 2."""
    args = build_parser().parse_args(argv)
    if args.debug:
        os.environ[DEBUG_ENV] = "1"
    try:
        predict(args)
    except Exception as e:
        # As train_net.py: a wrong path, key, dataset or checkpoint is one message, not a
        # traceback (--debug shows it); anything else is a bug and keeps its traceback.
        message = None if debug_enabled() else user_error_message(e)
        if message is None:
            raise
        print(f"predict.py: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(cli())
