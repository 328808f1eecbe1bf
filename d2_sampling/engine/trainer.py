"""
Trainer for yacs configs: Detectron2's ``DefaultTrainer`` with COCO evaluation, atomic
checkpoints, CPU-capable DDP and an end-of-training check that all workers agree.
"""
import logging
import os
import weakref

from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..data import prepare_datasets
from .checkpoint import AtomicCheckpointer
from .ddp import create_ddp_model
from .hooks import WeightSyncCheck

__all__ = ["Trainer"]


class Trainer(DefaultTrainer):
    def __init__(self, cfg):
        # Same construction as DefaultTrainer.__init__, with our DDP wrapper and checkpointer.
        TrainerBase.__init__(self)
        logger = logging.getLogger("detectron2")
        if not logger.isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        prepare_datasets(list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume=True):
        if resume:
            self.checkpointer.resumable_checkpoint()  # raises if there is nothing to resume
        super().resume_or_load(resume=resume)

    def build_hooks(self):
        hooks = super().build_hooks()
        # Before the writers (last), so a divergence is reported before the final flush.
        hooks.insert(len(hooks) - 1 if comm.is_main_process() else len(hooks),
                     WeightSyncCheck(self.cfg.OUTPUT_DIR))
        return hooks

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        prepare_datasets([dataset_name])
        return COCOEvaluator(dataset_name, output_dir=output_folder)
