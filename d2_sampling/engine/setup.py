"""
The one setup path of ``train_net.py``: load the config (yacs ``.yaml`` or LazyConfig ``.py``,
chosen by the file's suffix, strict about unknown keys), register its datasets, check
``--resume``, ready and check the datasets, then Detectron2's ``default_setup`` (logging,
config dump, seeding).
"""

import os
from typing import List, Optional, Sequence, Tuple

import torch
import yaml
from detectron2.config import CfgNode, LazyConfig, get_cfg
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from omegaconf import OmegaConf

from ..config import add_d2_sampling_config
from ..data import prepare_datasets, register_coco_format, register_voc_format
from ..evaluation import check_evaluator_name
from .checkpoint import resumable_checkpoint

__all__ = [
    "dataset_names",
    "is_lazy_config",
    "load_config",
    "load_lazy_config",
    "load_yacs_config",
    "output_dir",
    "register_cli_datasets",
    "register_cli_voc_datasets",
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


def _resolve(path: str, base_dir: Optional[str]) -> str:
    path = os.path.expanduser(os.fspath(path))
    return path if base_dir is None or os.path.isabs(path) else os.path.join(base_dir, path)


def register_cli_datasets(entries: Sequence[Sequence[str]], base_dir: Optional[str] = None) -> None:
    """
    Register ``[[name, json_file, image_root], ...]`` as COCO-format datasets. Relative paths
    resolve from ``base_dir`` (default: the working directory).
    """
    for entry in entries:
        if len(entry) != 3:
            raise ValueError(
                f"A COCO-format dataset is [name, json_file, image_root], got {list(entry)!r}"
            )
        name, json_file, image_root = entry
        register_coco_format(name, _resolve(json_file, base_dir), _resolve(image_root, base_dir))


def register_cli_voc_datasets(entries: Sequence[Sequence], base_dir: Optional[str] = None) -> None:
    """
    Register ``[[name, dir, split], ...]`` (or ``[name, dir, split, [class, ...]]``) as Pascal
    VOC-format datasets. Relative paths resolve from ``base_dir`` (default: the working
    directory).
    """
    for entry in entries:
        if len(entry) not in (3, 4) or (len(entry) == 4 and isinstance(entry[3], str)):
            raise ValueError(
                "A VOC-format dataset is [name, dir, split] or [name, dir, split, [class, ...]], "
                f"got {list(entry)!r}"
            )
        name, dirname, split = entry[:3]
        classes = list(entry[3]) if len(entry) == 4 else None
        register_voc_format(name, _resolve(dirname, base_dir), split, classes)


def _yaml_key_folder(config_file: str, keys: Tuple[str, ...]) -> str:
    """
    Folder of the yaml whose value of ``keys`` (e.g. ``("DATASETS", "VOC_FORMAT")``) wins in
    ``config_file``'s ``_BASE_`` chain (resolved as yacs resolves it): the last one setting it.
    ``config_file``'s folder when none does or a file cannot be read here.
    """
    folder = None

    def visit(path):
        nonlocal folder
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError):
            return
        base = data.get("_BASE_") if isinstance(data, dict) else None
        if isinstance(base, str):
            base = os.path.expanduser(base)
            if not base.startswith(("/", "https://", "http://")):
                visit(os.path.join(os.path.dirname(path), base))
            elif base.startswith("/"):
                visit(base)
        node = data
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            folder = os.path.dirname(os.path.abspath(path))

    visit(config_file)
    return folder or os.path.dirname(os.path.abspath(config_file))


def _register_config_datasets(cfg: CfgNode, config_file: str, opts: List[str]) -> None:
    """``DATASETS.COCO_FORMAT`` and ``DATASETS.VOC_FORMAT``, relative paths as documented."""
    for key, register in (
        ("COCO_FORMAT", register_cli_datasets),
        ("VOC_FORMAT", register_cli_voc_datasets),
    ):
        entries = cfg.DATASETS[key]
        if not entries:
            continue
        # Paths written in a yaml are relative to that yaml; typed on the command line, to the
        # shell's working directory (as --coco-dataset / --voc-dataset).
        on_command_line = f"DATASETS.{key}" in opts[0::2]
        register(
            entries, None if on_command_line else _yaml_key_folder(config_file, ("DATASETS", key))
        )


def _check_config_file(config_file: str) -> None:
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"--config-file {config_file!r} does not exist")


def load_yacs_config(config_file: str, opts: List[str]) -> CfgNode:
    """
    ``get_cfg()`` + our keys + ``config_file`` + ``opts`` (``KEY VALUE`` pairs), frozen. Unknown
    keys raise ``KeyError`` naming them; a bad ``TEST.EVALUATOR``, ``ValueError``.
    ``MODEL.DEVICE`` falls back to ``cpu`` without CUDA. The datasets of
    ``DATASETS.COCO_FORMAT`` and ``DATASETS.VOC_FORMAT`` are registered, their relative paths
    resolved from the folder of the yaml that sets the key (from the working directory when
    ``opts`` set it).
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
    check_evaluator_name(cfg.TEST.EVALUATOR)
    _register_config_datasets(cfg, config_file, opts)
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
    ``--coco-dataset`` and ``--voc-dataset`` datasets, load the config with its overrides, fail
    now when ``--resume`` has nothing to resume, make the datasets ready and check them
    (``prepare_datasets``: synthetic splits generated, every image decoded once and cached, bad
    boxes dropped or clipped with a warning), then ``default_setup``.

    Returns:
        the config: a frozen ``CfgNode`` (yacs) or an omegaconf ``DictConfig`` (LazyConfig).
    """
    register_cli_datasets(args.coco_dataset or [])
    register_cli_voc_datasets(getattr(args, "voc_dataset", None) or [])
    cfg = load_config(args.config_file, args.opts)
    if args.resume:
        resumable_checkpoint(output_dir(cfg))
    # default_setup configures Detectron2's loggers only, and later: the dataset checks'
    # progress and warnings go to the console and log.txt like Detectron2's.
    setup_logger(
        output_dir(cfg) or None,
        distributed_rank=comm.get_rank(),
        name="d2_sampling",
        abbrev_name="d2s",
    )
    prepare_datasets(dataset_names(cfg, train=not args.eval_only))
    default_setup(cfg, args)
    return cfg
