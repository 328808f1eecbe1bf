"""
Training and evaluation for LazyConfig (``.py``) configs, following Detectron2's
``tools/lazyconfig_train_net.py``, with the same extras as the yacs ``Trainer``: COCO
evaluation, atomic checkpoints, CPU-capable DDP, the end-of-training weight check.
"""
import logging

from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..data import prepare_datasets
from .checkpoint import AtomicCheckpointer
from .ddp import create_ddp_model
from .hooks import WeightSyncCheck

__all__ = ["lazy_dataset_names", "do_test", "do_train"]

logger = logging.getLogger("detectron2")


def _names(x):
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def lazy_dataset_names(cfg):
    """Dataset names used by a LazyConfig's train and test loaders."""
    names = []
    for split in ("train", "test"):
        loader = cfg.dataloader.get(split)
        if loader is not None and "dataset" in loader and "names" in loader.dataset:
            names += _names(loader.dataset.names)
    return names


def do_test(cfg, model):
    if "evaluator" not in cfg.dataloader:
        return {}
    prepare_datasets(_names(cfg.dataloader.test.dataset.names))
    ret = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    if comm.is_main_process():
        print_csv_format(ret)
    return ret


def do_train(cfg, resume: bool):
    """
    Train ``cfg`` (a LazyConfig with ``model``, ``dataloader``, ``optimizer``,
    ``lr_multiplier`` and ``train``), evaluating every ``train.eval_period`` iterations and at
    the end.
    """
    prepare_datasets(lazy_dataset_names(cfg))
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optim)
    checkpointer = AtomicCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
            if comm.is_main_process()
            else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            WeightSyncCheck(cfg.train.output_dir),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter),
                period=cfg.train.log_period,
            )
            if comm.is_main_process()
            else None,
        ]
    )
    if resume:
        checkpointer.resumable_checkpoint()  # raises if there is nothing to resume
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    if resume and checkpointer.has_checkpoint():
        start_iter = trainer.iter + 1
    else:
        start_iter = 0
    trainer.train(start_iter, cfg.train.max_iter)
