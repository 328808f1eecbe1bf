"""Datasets: the built-in synthetic splits (registered on import) and COCO-format registration."""

from .datasets import (
    prepare_datasets,
    register_coco_format,
    register_synthetic_datasets,
    validate_coco_json,
)
from .synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_SPLITS,
    generate_synthetic_dataset,
    synthetic_paths,
)

__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_SPLITS",
    "generate_synthetic_dataset",
    "prepare_datasets",
    "register_coco_format",
    "register_synthetic_datasets",
    "synthetic_paths",
    "validate_coco_json",
]

register_synthetic_datasets()
