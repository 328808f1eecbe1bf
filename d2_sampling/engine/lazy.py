"""
Training and evaluation of LazyConfig (``.py``) configs: Detectron2's
``tools/lazyconfig_train_net.py`` (``do_test``, ``do_train``), which is a script and not part of
the installed package, with three changes: atomic checkpoints, DDP that also runs on CPU
workers, and results printed by the main process only.
"""

import logging
from typing import Iterable, Optional

from detectron2.config import instantiate
from detectron2.engine import (
    AMPTrainer,
    HookBase,
    SimpleTrainer,
    create_ddp_model,
    default_writers,
    hooks,
)
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from .checkpoint import AtomicCheckpointer
from .trainer import ddp_device_kwargs

__all__ = ["do_test", "do_train"]

logger = logging.getLogger("detectron2")


def do_test(cfg, model):
    """Evaluate ``model`` with ``cfg.dataloader.evaluator`` on ``cfg.dataloader.test``."""
    if "evaluator" not in cfg.dataloader:
        return {}
    ret = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    if comm.is_main_process():
        print_csv_format(ret)
    return ret


def do_train(cfg, resume: bool, extra_hooks: Optional[Iterable[HookBase]] = None):
    """
    Train ``cfg`` (a LazyConfig with ``model``, ``dataloader``, ``optimizer``,
    ``lr_multiplier`` and ``train``), evaluating every ``train.eval_period`` iterations and at
    the end. ``resume``: continue from the last checkpoint of ``train.output_dir`` if there is
    one. ``extra_hooks`` run after Detectron2's.
    """
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = create_ddp_model(model, **{**ddp_device_kwargs(model), **cfg.train.ddp})
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optim)
    checkpointer = AtomicCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main = comm.is_main_process()
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter),
                period=cfg.train.log_period,
            )
            if main
            else None,
            *(extra_hooks or []),
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    # The checkpoint stores the iteration that just finished.
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
