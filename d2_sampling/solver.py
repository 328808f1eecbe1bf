"""
Learning-rate schedules for LazyConfig configs that train exactly as their yacs twins.
"""

from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

__all__ = ["multistep_lr_multiplier"]


def multistep_lr_multiplier(
    *, max_iter, steps, warmup_iters, gamma=0.1, warmup_factor=0.001, warmup_method="linear"
):
    """
    The multiplier of ``optimizer.lr`` that Detectron2's yacs ``WarmupMultiStepLR`` applies
    (``build_lr_scheduler`` in ``detectron2/solver/build.py``, written out line for line), so a
    LazyConfig trains with its yaml twin's schedule: ``steps`` and ``warmup_iters`` are absolute
    iterations, as ``SOLVER.STEPS`` and ``SOLVER.WARMUP_ITERS``. A ``max_iter`` below a step drops
    it, and one below ``warmup_iters`` shortens the warm-up to ``max_iter``, as in yacs.

    Args:
        max_iter (int): ``train.max_iter`` (the schedule's ``where`` is ``iteration / max_iter``).
        steps (list[int]): iterations at which the rate is multiplied by ``gamma``.
        warmup_iters (int): iterations of warm-up from ``warmup_factor`` to 1.
        gamma, warmup_factor, warmup_method: ``SOLVER.GAMMA``, ``WARMUP_FACTOR``,
            ``WARMUP_METHOD`` (``"linear"`` or ``"constant"``).
    """
    steps = [x for x in steps if x <= max_iter]
    scheduler = MultiStepParamScheduler(
        values=[gamma**k for k in range(len(steps) + 1)], milestones=steps, num_updates=max_iter
    )
    return WarmupParamScheduler(
        scheduler, warmup_factor, min(warmup_iters / max_iter, 1.0), warmup_method
    )
