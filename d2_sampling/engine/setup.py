"""
Loading configs for ``train_net.py``: yacs (``.yaml``) or LazyConfig (``.py``), chosen by the
file's suffix, each with command-line overrides, and strict about unknown keys.
"""
import os
from typing import List, Sequence

import torch
from omegaconf import OmegaConf

from detectron2.config import LazyConfig, get_cfg

from ..config import add_d2_sampling_config
from ..data import register_coco_format

__all__ = ["is_lazy_config", "load_yacs_config", "load_lazy_config", "register_cli_datasets"]

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


def load_yacs_config(config_file: str, opts: List[str]):
    """
    ``get_cfg()`` + our keys + ``config_file`` + ``opts`` (``KEY VALUE`` pairs). Unknown keys
    raise yacs' ``KeyError`` naming them. ``MODEL.DEVICE`` falls back to ``cpu`` without CUDA.
    """
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"--config-file {config_file!r} does not exist")
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
        raise KeyError(
            f"Non-existent config key: {key!r} (prefix it with '+' to add a new key)"
        )
    return override


def load_lazy_config(config_file: str, opts: List[str]):
    """
    Load a LazyConfig and apply ``key=value`` overrides. An override of a key the config does
    not have raises ``KeyError`` naming it (OmegaConf would silently add it). ``train.device``
    falls back to ``cpu`` without CUDA.
    """
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"--config-file {config_file!r} does not exist")
    cfg = LazyConfig.load(config_file)
    opts = [_check_override(cfg, o) for o in opts]
    cfg = LazyConfig.apply_overrides(cfg, opts)
    if str(cfg.train.get("device", "cuda")).startswith("cuda") and not torch.cuda.is_available():
        cfg.train.device = "cpu"
    return cfg
