"""
What Detectron2's engine lacks, and nothing else: atomic checkpoints and the ``--eval-only``
weight check, ``torchrun`` and CPU (gloo) workers, strict config overrides, one setup path for
``train_net.py`` (with the class-count check and user errors without tracebacks); ``Trainer``
and the LazyConfig ``do_train`` are Detectron2's with those pieces plugged in.
"""

from .checkpoint import AtomicCheckpointer, atomic_write, load_eval_weights, resumable_checkpoint
from .class_count import check_class_counts
from .errors import UserError
from .hooks import WeightSyncCheck, weights_digest
from .launch import launch, launched_by_torchrun
from .setup import load_config, load_lazy_config, load_yacs_config, setup
from .trainer import Trainer

__all__ = [
    "AtomicCheckpointer",
    "UserError",
    "check_class_counts",
    "load_eval_weights",
    "Trainer",
    "WeightSyncCheck",
    "atomic_write",
    "launch",
    "launched_by_torchrun",
    "load_config",
    "load_lazy_config",
    "load_yacs_config",
    "resumable_checkpoint",
    "setup",
    "weights_digest",
]
