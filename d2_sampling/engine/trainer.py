"""
``Trainer``: Detectron2's ``DefaultTrainer`` with atomic checkpoints, DDP that also runs on CPU
workers, data loaders whose errors name the image file, and evaluation by ``TEST.EVALUATOR``
(COCO AP of the tasks the model has, or VOC AP).
"""

import os
from contextlib import contextmanager

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.engine import defaults as d2_defaults

from ..data import CheckedDatasetMapper
from ..evaluation import build_evaluator
from .checkpoint import AtomicCheckpointer

__all__ = ["Trainer", "ddp_device_kwargs"]


def ddp_device_kwargs(model) -> dict:
    """
    Extra arguments for ``detectron2.engine.create_ddp_model``: ``device_ids=None`` for a model
    on the CPU, because Detectron2 passes ``[local_rank]`` unless told otherwise and
    ``DistributedDataParallel`` rejects device ids for CPU modules (gloo workers).
    """
    return {} if next(model.parameters()).is_cuda else {"device_ids": None}


@contextmanager
def _cpu_capable_ddp():
    # DefaultTrainer.__init__ calls create_ddp_model(model, broadcast_buffers=False) with no way
    # to pass device_ids; give it ddp_device_kwargs for the duration of the constructor only.
    create = d2_defaults.create_ddp_model

    def create_ddp_model(model, **kwargs):
        return create(model, **{**ddp_device_kwargs(model), **kwargs})

    d2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = create


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` (yacs configs) as described in the module docstring."""

    def __init__(self, cfg):
        with _cpu_capable_ddp():
            super().__init__(cfg)

    def build_hooks(self):
        # DefaultTrainer.__init__ made a plain DetectionCheckpointer just before calling this;
        # the periodic-checkpoint hook built below must hold the atomic one.
        plain = self.checkpointer
        self.checkpointer = AtomicCheckpointer(
            plain.model, plain.save_dir, save_to_disk=plain.save_to_disk, **plain.checkpointables
        )
        return super().build_hooks()

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """``TEST.EVALUATOR``'s evaluator: COCO AP of the model's tasks, or Pascal VOC AP."""
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def build_train_loader(cls, cfg):
        """Detectron2's, with a mapper whose errors name the image file."""
        return build_detection_train_loader(cfg, mapper=CheckedDatasetMapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """Detectron2's, with a mapper whose errors name the image file."""
        return build_detection_test_loader(
            cfg, dataset_name, mapper=CheckedDatasetMapper(cfg, False)
        )
