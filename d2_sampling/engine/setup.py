"""
The one setup path of ``train_net.py``: load the config (yacs ``.yaml`` or LazyConfig ``.py``,
chosen by the file's suffix, strict about unknown keys), register its datasets, check
``--resume`` and the weights of ``--eval-only``, ready and check the datasets, check the class
count against them (``class_count.py``), then Detectron2's ``default_setup`` (logging, config
dump, seeding), with colour codes only on a terminal (``logs.py``).

What goes wrong in here is the user's to fix: it is raised as ``UserError`` (``errors.py``),
which ``train_net.py`` prints as one message, without a traceback.
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
from ..modeling.roi_heads import check_box_loss_config, check_roi_sampler_config
from .checkpoint import eval_weights_path, resumable_checkpoint
from .class_count import check_class_counts
from .errors import user_errors
from .logs import no_colour_unless_tty, plain_default_setup_logs

__all__ = [
    "check_before_launch",
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


def add_dataset_arguments(parser, coco: bool = True, voc: bool = True, then: str = ""):
    """
    The command-line options that register datasets, as train_net.py has them:
    ``--coco-dataset NAME JSON IMAGE_ROOT`` and ``--voc-dataset NAME DIR SPLIT`` (each
    repeatable; ``args.coco_dataset`` / ``args.voc_dataset`` are lists, empty by default).
    Register them with :func:`register_cli_datasets` / :func:`register_cli_voc_datasets`.

    Args:
        parser (argparse.ArgumentParser): gets the options.
        coco, voc (bool): which of the two.
        then (str): appended to the help, e.g. "; then name it in --dataset".
    """
    if coco:
        parser.add_argument(
            "--coco-dataset",
            nargs=3,
            action="append",
            default=[],
            metavar=("NAME", "JSON", "IMAGE_ROOT"),
            help="register a COCO-format dataset under NAME (repeatable)" + then,
        )
    if voc:
        parser.add_argument(
            "--voc-dataset",
            nargs=3,
            action="append",
            default=[],
            metavar=("NAME", "DIR", "SPLIT"),
            help="register split SPLIT (DIR/ImageSets/Main/SPLIT.txt) of the Pascal VOC-format "
            "folder DIR under NAME (repeatable); classes from DIR/classes.txt, else the sorted "
            "names in DIR/Annotations (docs/datasets.md)" + then,
        )


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


def _yaml_setting(config_file: str, keys: Tuple[str, ...]) -> Optional[str]:
    """
    The yaml whose value of ``keys`` (e.g. ``("DATASETS", "VOC_FORMAT")``) wins in
    ``config_file``'s ``_BASE_`` chain (resolved as yacs resolves it): the last one setting it.
    ``None`` when none does (files that cannot be read here are skipped).
    """
    setting = None

    def visit(path):
        nonlocal setting
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
            setting = os.path.abspath(path)

    visit(config_file)
    return setting


def _yaml_key_folder(config_file: str, keys: Tuple[str, ...]) -> str:
    """Folder of ``_yaml_setting(config_file, keys)``; ``config_file``'s when none sets it."""
    return os.path.dirname(_yaml_setting(config_file, keys) or os.path.abspath(config_file))


def _set_by(config_file: str, opts: List[str]):
    """``key -> where it is set``: "the command line", a yaml of the chain, or ``None``."""

    def where(key: str) -> Optional[str]:
        if key in opts[0::2]:
            return "the command line"
        path = _yaml_setting(config_file, tuple(key.split(".")))
        return None if path is None else repr(os.path.relpath(path))

    return where


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


def load_yacs_config(
    config_file: str, opts: List[str], *, register_datasets: bool = True
) -> CfgNode:
    """
    ``get_cfg()`` + our keys + ``config_file`` + ``opts`` (``KEY VALUE`` pairs), frozen. Unknown
    keys raise ``KeyError`` naming them; a bad ``TEST.EVALUATOR``, ``ValueError``.
    ``MODEL.DEVICE`` falls back to ``cpu`` without CUDA. With ``register_datasets``, the datasets
    of ``DATASETS.COCO_FORMAT`` and ``DATASETS.VOC_FORMAT`` are registered, their relative paths
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
    check_roi_sampler_config(cfg)
    check_box_loss_config(cfg)
    if register_datasets:
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


def load_config(config_file: str, opts: List[str], *, register_datasets: bool = True):
    """``load_lazy_config`` or ``load_yacs_config``, by the file's suffix."""
    if is_lazy_config(config_file):
        return load_lazy_config(config_file, opts)
    return load_yacs_config(config_file, opts, register_datasets=register_datasets)


def output_dir(cfg) -> str:
    """``OUTPUT_DIR`` (yacs) or ``train.output_dir`` (LazyConfig)."""
    return cfg.OUTPUT_DIR if isinstance(cfg, CfgNode) else cfg.train.output_dir


def _as_list(names) -> List[str]:
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


def _split_datasets(cfg, split: str) -> List[str]:
    """The datasets of ``split`` ("train" or "test") of ``cfg``."""
    if isinstance(cfg, CfgNode):
        return _as_list(cfg.DATASETS.TRAIN if split == "train" else cfg.DATASETS.TEST)
    loader = cfg.dataloader.get(split)
    if loader is not None and "dataset" in loader and "names" in loader.dataset:
        return _as_list(loader.dataset.names)
    return []


def dataset_names(cfg, *, train: bool = True) -> List[str]:
    """The test datasets of ``cfg``, preceded by its training datasets when ``train``."""
    return (_split_datasets(cfg, "train") if train else []) + _split_datasets(cfg, "test")


def _check_run(cfg, args) -> None:
    """``--resume`` has something to resume; ``--eval-only`` has weights to evaluate."""
    out = output_dir(cfg)
    if args.eval_only:
        lazy = not isinstance(cfg, CfgNode)
        weights = cfg.train.get("init_checkpoint", "") if lazy else cfg.MODEL.WEIGHTS
        key = "train.init_checkpoint" if lazy else "MODEL.WEIGHTS"
        eval_weights_path(weights, out, resume=args.resume, key=key)
    elif args.resume:
        resumable_checkpoint(out)


def check_before_launch(args) -> None:
    """
    The checks of ``setup`` that need neither workers nor datasets (the config and its
    overrides, ``--resume``, ``--eval-only``'s weights), for the launching process to run
    before it starts workers: most mistakes then end before any worker starts. Datasets are
    not registered here (registering reads their annotation files; the workers do it).

    Raises:
        UserError: as ``setup``.
    """
    with user_errors():
        cfg = load_config(args.config_file, args.opts, register_datasets=False)
        _check_run(cfg, args)


def setup(args):
    """
    Everything ``train_net.py`` does before building a model, once per worker: register the
    ``--coco-dataset`` and ``--voc-dataset`` datasets, load the config with its overrides, fail
    now when ``--resume`` has nothing to resume or ``--eval-only`` no weights, make the
    datasets ready and check them (``prepare_datasets``: synthetic splits generated, every
    image decoded once and cached, bad boxes dropped or clipped with a warning), check the class
    count against their classes and fill a ``-1`` (``check_class_counts``), then
    ``default_setup``, its logs without colour codes where they do not reach a terminal.

    Returns:
        the config: a frozen ``CfgNode`` (yacs) or an omegaconf ``DictConfig`` (LazyConfig).

    Raises:
        UserError: a bad config, path, dataset or class count (the errors of loading the config
            and the datasets become ``UserError`` with their message).
    """
    with user_errors():
        return _setup(args)


def _setup(args):
    register_cli_datasets(args.coco_dataset or [])
    register_cli_voc_datasets(getattr(args, "voc_dataset", None) or [])
    cfg = load_config(args.config_file, args.opts)
    _check_run(cfg, args)
    # default_setup configures Detectron2's loggers only, and later: the dataset checks'
    # progress and warnings go to the console and log.txt like Detectron2's.
    no_colour_unless_tty(
        setup_logger(
            output_dir(cfg) or None,
            distributed_rank=comm.get_rank(),
            name="d2_sampling",
            abbrev_name="d2s",
        )
    )
    train = [] if args.eval_only else _split_datasets(cfg, "train")
    test = _split_datasets(cfg, "test")
    prepare_datasets([*train, *test])
    # The first worker of each machine loaded every dataset (so COCO jsons' thing_classes are
    # known): it checks; the others only fill a -1, so that a run reports one error.
    cfg = check_class_counts(
        cfg,
        train,
        test,
        set_by=_set_by(args.config_file, list(args.opts or [])),
        check=comm.get_local_rank() == 0,
    )
    with plain_default_setup_logs():
        default_setup(cfg, args)
    return cfg
