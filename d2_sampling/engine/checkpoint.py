"""
A ``DetectionCheckpointer`` whose files are never half-written.

Detectron2 writes ``model_XXXX.pth`` and ``last_checkpoint`` in place: a job killed during the
write leaves a truncated file, and ``--resume`` then fails or, worse, ``last_checkpoint`` names
it. Here each file is written to a temporary name in the same folder, flushed to disk, and
renamed over the target (atomic on POSIX), and ``last_checkpoint`` is only updated after the
checkpoint itself is complete.
"""

import os
import tempfile

import torch
from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["AtomicCheckpointer", "atomic_write", "resumable_checkpoint"]


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
