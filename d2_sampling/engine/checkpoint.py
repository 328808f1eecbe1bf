"""
A ``DetectionCheckpointer`` whose files are never half-written, and the loading of the weights
``--eval-only`` evaluates, which refuses weights that do not fit the model.

Detectron2 writes ``model_XXXX.pth`` and ``last_checkpoint`` in place: a job killed during the
write leaves a truncated file, and ``--resume`` then fails or, worse, ``last_checkpoint`` names
it. Here each file is written to a temporary name in the same folder, flushed to disk, and
renamed over the target (atomic on POSIX), and ``last_checkpoint`` is only updated after the
checkpoint itself is complete.
"""

import logging
import os
import tempfile
from typing import List

import torch
from detectron2.checkpoint import DetectionCheckpointer

from .errors import WeightsError

__all__ = [
    "AtomicCheckpointer",
    "atomic_write",
    "eval_weights_path",
    "load_eval_weights",
    "resumable_checkpoint",
]

logger = logging.getLogger(__name__)


def atomic_write(path: str, write_fn, mode: str = "wb") -> None:
    """Call ``write_fn(f)`` on a temporary file next to ``path``, then rename it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _is_local(path: str) -> bool:
    return "://" not in path


class AtomicCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic ``save`` and ``tag_last_checkpoint``."""

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk or not _is_local(self.save_dir):
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not _is_local(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        save_file = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(save_file, lambda f: f.write(last_filename_basename), mode="w")


def resumable_checkpoint(output_dir: str) -> str:
    """
    The checkpoint ``--resume`` would load from ``output_dir``.

    Raises:
        FileNotFoundError: nothing to resume (no ``last_checkpoint`` file, or it names a
            missing file).
    """
    tag = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(tag):
        raise FileNotFoundError(
            f"--resume: nothing to resume in output directory {output_dir!r} "
            "(no 'last_checkpoint' file). Drop --resume to start a new run."
        )
    with open(tag) as f:
        path = os.path.join(output_dir, f.read().strip())
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: {tag!r} names {path!r}, which does not exist")
    return path


def eval_weights_path(weights: str, output_dir: str, *, resume: bool, key: str) -> str:
    """
    The checkpoint ``--eval-only`` evaluates: with ``resume``, the last one of ``output_dir``;
    else ``weights`` (the value of config key ``key``: ``MODEL.WEIGHTS`` or
    ``train.init_checkpoint``).

    Raises:
        FileNotFoundError: ``resume`` with nothing to resume (``resumable_checkpoint``).
        WeightsError: no weights (``key`` is empty), or a local file that does not exist.
    """
    if resume:
        return resumable_checkpoint(output_dir)
    # LazyConfig keys are lower case and take key=value; yacs keys, KEY VALUE.
    example = f"{key}{'=' if key.islower() else ' '}path/to/model_final.pth"
    if not weights:
        raise WeightsError(
            f"--eval-only: no weights to evaluate ({key} is empty); the model would be evaluated "
            f"with random weights. Give {example}, or --resume to evaluate the last checkpoint "
            f"of {output_dir!r}"
        )
    if _is_local(weights) and not os.path.isfile(weights):
        raise WeightsError(f"--eval-only: {key} {weights!r} does not exist")
    return weights


class _RecordingCheckpointer(DetectionCheckpointer):
    """Keeps what the last load left incompatible (fvcore only logs it)."""

    incompatible = None

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def _grouped(keys: List[str], limit: int = 8) -> str:
    """``a.b.{weight, bias}, ...`` for the first ``limit`` modules, then how many more."""
    groups = {}
    for key in keys:
        module, _, name = key.rpartition(".")
        groups.setdefault(module, []).append(name)
    parts = [
        f"{module}.{names[0]}" if len(names) == 1 else f"{module}.{{{', '.join(names)}}}"
        for module, names in list(groups.items())[:limit]
    ]
    if len(groups) > limit:
        parts.append(f"and {len(groups) - limit} more modules")
    return ", ".join(parts)


def load_eval_weights(
    model, weights: str, output_dir: str, *, resume: bool, key: str, allow_partial: bool = False
) -> str:
    """
    Load into ``model`` the weights ``--eval-only`` evaluates (``eval_weights_path``), and make
    sure they are the model's: every parameter and buffer loaded, each with its shape.

    Args:
        model (nn.Module): the model to evaluate (not wrapped in DDP).
        weights (str): the config's weights (``MODEL.WEIGHTS`` / ``train.init_checkpoint``).
        output_dir (str): where ``resume`` finds the last checkpoint.
        resume (bool): ``--resume``: evaluate the last checkpoint of ``output_dir``.
        key (str): the config key of ``weights``, for the messages.
        allow_partial (bool): ``--allow-partial-weights``: a partial load is a warning.

    Returns:
        str: the file loaded.

    Raises:
        WeightsError: no weights, a missing file, or weights that leave a parameter or buffer
            of the model unloaded or of another shape (naming them), unless ``allow_partial``.
    """
    path = eval_weights_path(weights, output_dir, resume=resume, key=key)
    checkpointer = _RecordingCheckpointer(model, save_dir=output_dir)
    checkpointer.load(path)
    incompatible = checkpointer.incompatible
    if incompatible is None:
        return path
    shapes = list(incompatible.incorrect_shapes)
    shape_keys = {k for k, _, _ in shapes}
    missing = [k for k in incompatible.missing_keys if k not in shape_keys]
    if not shapes and not missing:
        return path
    problems = []
    if shapes:
        listed = "; ".join(
            f"{k}: {tuple(ckpt)} in the checkpoint, {tuple(mine)} in the model"
            for k, ckpt, mine in shapes[:8]
        )
        more = f"; and {len(shapes) - 8} more" if len(shapes) > 8 else ""
        problems.append(f"{len(shapes)} with another shape ({listed}{more})")
    if missing:
        problems.append(f"{len(missing)} not in the checkpoint ({_grouped(missing)})")
    message = (
        f"--eval-only: the weights {path!r} do not fit the model: of its parameters and "
        f"buffers, {' and '.join(problems)}."
    )
    if allow_partial:
        logger.warning(f"{message} Evaluating anyway (--allow-partial-weights).")
        return path
    raise WeightsError(
        f"{message} Evaluating would score randomly initialised layers. Use the config the "
        "checkpoint was trained with (its class count among others), or pass "
        "--allow-partial-weights to evaluate a partly loaded model on purpose."
    )
