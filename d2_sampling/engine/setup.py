"""
The one setup path of ``train_net.py``: load the config (yacs ``.yaml`` or LazyConfig ``.py``,
chosen by the file's suffix, strict about unknown keys), register its datasets, check
``--resume``, then Detectron2's ``default_setup`` (logging, config dump, seeding).
"""

import os
from typing import List, Sequence

import torch
from detectron2.config import CfgNode, LazyConfig, get_cfg
from detectron2.engine import default_setup
from omegaconf import OmegaConf

from ..config import add_d2_sampling_config
from ..data import prepare_datasets, register_coco_format
from .checkpoint import resumable_checkpoint

__all__ = [
    "dataset_names",
    "is_lazy_config",
    "load_config",
    "load_lazy_config",
    "load_yacs_config",
    "output_dir",
    "register_cli_datasets",
    "setup",
]

_MISSING = object()


def is_lazy_config(path: str) -> bool:
    """``.py`` -> LazyConfig, ``.yaml``/``.yml`` -> yacs; anything else is an error."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".py":
        return True
    if ext in (".yaml", ".yml"):
        return False
    raise ValueError(f"--config-file {path!r}: expected a .yaml (yacs) or .py (LazyConfig) file")


def register_cli_datasets(entries: Sequence[Sequence[str]]) -> None:
    """Register ``[[name, json_file, image_root], ...]`` as COCO-format datasets."""
    for entry in entries:
        if len(entry) != 3:
            raise ValueError(
                f"A COCO-format dataset is [name, json_file, image_root], got {list(entry)!r}"
            )
        register_coco_format(*entry)


def _check_config_file(config_file: str) -> None:
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"--config-file {config_file!r} does not exist")


def load_yacs_config(config_file: str, opts: List[str]) -> CfgNode:
    """
    ``get_cfg()`` + our keys + ``config_file`` + ``opts`` (``KEY VALUE`` pairs), frozen. Unknown
    keys raise ``KeyError`` naming them. ``MODEL.DEVICE`` falls back to ``cpu`` without CUDA.
    The datasets of ``DATASETS.COCO_FORMAT`` are registered.
    """
    _check_config_file(config_file)
    cfg = get_cfg()
    add_d2_sampling_config(cfg)
    cfg.merge_from_file(config_file)
    if len(opts) % 2:
        raise ValueError(f"Overrides must be KEY VALUE pairs, got an odd number: {opts}")
    for key in opts[0::2]:
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                # yacs itself only asserts; name the key in a KeyError as merge_from_file does.
                raise KeyError(f"Non-existent config key: {key}")
            node = node[part]
    cfg.merge_from_list(opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    register_cli_datasets(cfg.DATASETS.COCO_FORMAT)
    cfg.freeze()
    return cfg


def _check_override(cfg, override: str) -> str:
    if "=" not in override:
        raise ValueError(f"LazyConfig override {override!r} is not of the form key=value")
    key = override.split("=", 1)[0].strip()
    if key.startswith("+"):  # hydra's syntax for adding a new key
        return override[1:] if override.startswith("+") else override
    if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
        raise KeyError(f"Non-existent config key: {key!r} (prefix it with '+' to add a new key)")
    return override


def load_lazy_config(config_file: str, opts: List[str]):
    """
    Load a LazyConfig and apply ``key=value`` overrides. An override of a key the config does
    not have raises ``KeyError`` naming it (OmegaConf would silently add it). ``train.device``
    falls back to ``cpu`` without CUDA.
    """
    _check_config_file(config_file)
    cfg = LazyConfig.load(config_file)
    opts = [_check_override(cfg, o) for o in opts]
    cfg = LazyConfig.apply_overrides(cfg, opts)
    if str(cfg.train.get("device", "cuda")).startswith("cuda") and not torch.cuda.is_available():
        cfg.train.device = "cpu"
    return cfg


def load_config(config_file: str, opts: List[str]):
    """``load_lazy_config`` or ``load_yacs_config``, by the file's suffix."""
    if is_lazy_config(config_file):
        return load_lazy_config(config_file, opts)
    return load_yacs_config(config_file, opts)


def output_dir(cfg) -> str:
    """``OUTPUT_DIR`` (yacs) or ``train.output_dir`` (LazyConfig)."""
    return cfg.OUTPUT_DIR if isinstance(cfg, CfgNode) else cfg.train.output_dir


def _as_list(names) -> List[str]:
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


def dataset_names(cfg, *, train: bool = True) -> List[str]:
    """The test datasets of ``cfg``, preceded by its training datasets when ``train``."""
    if isinstance(cfg, CfgNode):
        return _as_list(cfg.DATASETS.TRAIN if train else []) + _as_list(cfg.DATASETS.TEST)
    names = []
    for split in ("train", "test") if train else ("test",):
        loader = cfg.dataloader.get(split)
        if loader is not None and "dataset" in loader and "names" in loader.dataset:
            names += _as_list(loader.dataset.names)
    return names


def setup(args):
    """
    Everything ``train_net.py`` does before building a model, once per worker: register the
    ``--coco-dataset`` datasets, load the config with its overrides, fail now when ``--resume``
    has nothing to resume, make the datasets ready (generate synthetic splits, check files),
    then ``default_setup``.

    Returns:
        the config: a frozen ``CfgNode`` (yacs) or an omegaconf ``DictConfig`` (LazyConfig).
    """
    register_cli_datasets(args.coco_dataset or [])
    cfg = load_config(args.config_file, args.opts)
    if args.resume:
        resumable_checkpoint(output_dir(cfg))
    prepare_datasets(dataset_names(cfg, train=not args.eval_only))
    default_setup(cfg, args)
    return cfg
