"""Pieces shared by the training-iteration benchmarks (bench_ohem.py, bench_iou_balanced.py)."""

import copy
from pathlib import Path

from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T

from d2_sampling.data import prepare_datasets
from d2_sampling.engine import load_yacs_config

REPO = Path(__file__).resolve().parents[1]


def load_cfg(config, opts):
    """
    The yacs config ``configs/<config>`` with ``opts``, loaded as ``train_net.py`` loads it,
    on the CPU, with no weights to load.
    """
    return load_yacs_config(
        str(REPO / "configs" / config), [*opts, "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""]
    )


def fixed_batch(cfg, num_images, size):
    """``num_images`` annotated synthetic images, mapped once at a fixed size (no flip)."""
    prepare_datasets(["synthetic_mini_train"])
    dicts = [d for d in DatasetCatalog.get("synthetic_mini_train") if d["annotations"]]
    mapper = DatasetMapper(cfg, is_train=True)
    mapper.augmentations = T.AugmentationList([T.ResizeShortestEdge(size, max_size=448)])
    return [mapper(copy.deepcopy(d)) for d in dicts[:num_images]]
