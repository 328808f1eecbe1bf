"""Pieces shared by the training-iteration benchmarks (bench_ohem.py, bench_iou_balanced.py)."""
import copy
from pathlib import Path

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T

from d2_sampling import add_d2_sampling_config

REPO = Path(__file__).resolve().parents[1]


def load_cfg(config, opts):
    """A yacs config from ``configs/<config>`` with ``opts``, on the CPU, no weights to load."""
    cfg = get_cfg()
    add_d2_sampling_config(cfg)
    cfg.merge_from_file(str(REPO / "configs" / config))
    cfg.merge_from_list(list(opts))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    return cfg


def fixed_batch(cfg, num_images, size):
    """``num_images`` annotated synthetic images, mapped once at a fixed size (no flip)."""
    dicts = [d for d in DatasetCatalog.get("synthetic_mini_train") if d["annotations"]]
    mapper = DatasetMapper(cfg, is_train=True)
    mapper.augmentations = T.AugmentationList([T.ResizeShortestEdge(size, max_size=448)])
    return [mapper(copy.deepcopy(d)) for d in dicts[:num_images]]
