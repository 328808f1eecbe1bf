"""
Datasets: the built-in synthetic splits (registered on import), COCO-format and Pascal
VOC-format registration, and the checks every dataset goes through before training.
"""

from .checks import (
    DatasetError,
    check_annotations,
    check_cache_dir,
    check_dataset_dicts,
    check_images,
)
from .datasets import (
    format_datasets,
    prepare_datasets,
    register_coco_format,
    register_synthetic_datasets,
    validate_coco_json,
)
from .mapper import CheckedDatasetMapper, ImageLoadError
from .synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_SPLITS,
    generate_synthetic_dataset,
    synthetic_paths,
)
from .voc import load_voc_format, register_voc_format, voc_class_names

__all__ = [
    "CheckedDatasetMapper",
    "DatasetError",
    "ImageLoadError",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_SPLITS",
    "check_annotations",
    "check_cache_dir",
    "check_dataset_dicts",
    "check_images",
    "format_datasets",
    "generate_synthetic_dataset",
    "load_voc_format",
    "prepare_datasets",
    "register_coco_format",
    "register_synthetic_datasets",
    "register_voc_format",
    "synthetic_paths",
    "validate_coco_json",
    "voc_class_names",
]

register_synthetic_datasets()
