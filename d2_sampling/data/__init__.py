from .datasets import prepare_datasets, register_coco_format, register_synthetic_datasets, validate_coco_json
from .synthetic import SYNTHETIC_CLASSES, SYNTHETIC_SPLITS, generate_synthetic_dataset, synthetic_paths

register_synthetic_datasets()
