"""
The yacs and LazyConfig twin of every config train with the same learning rate at every
iteration, with the configs' own ``max_iter`` and after ``SOLVER.MAX_ITER`` /
``train.max_iter`` overrides (the README says the twins are the same model and schedule).
"""

import glob
import os

import pytest
import torch
from detectron2.config import instantiate
from detectron2.solver import LRMultiplier, build_lr_scheduler

import d2_sampling  # noqa: F401
from d2_sampling.engine.setup import load_lazy_config, load_yacs_config

from helpers import CONFIGS, bccd_available

YAMLS = sorted(
    p
    for p in glob.glob(str(CONFIGS / "**" / "*.yaml"), recursive=True)
    if not os.path.basename(p).startswith("Base-")
)
# A yaml and the LazyConfig beside it, as tests/test_configs.py pairs them.
TWINS = [p for p in YAMLS if os.path.isfile(os.path.splitext(p)[0] + ".py")]


def _rel(p):
    return os.path.relpath(p, CONFIGS)


# The configs' own max_iter; one shorter than every warm-up and first step (Synthetic and BCCD:
# 100 / 480, COCO: 1000 / 60000) and longer than the quick schedules' 4 iterations; one that
# ends the synthetic schedule between its steps.
MAX_ITER_OVERRIDES = (None, 30, 500)


def _dummy_optimizer(lr):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def _lrs(scheduler, optimizer, max_iter):
    """The learning rate of iterations 0..max_iter-1, stepped as Detectron2's LRScheduler hook."""
    lrs = []
    for _ in range(max_iter):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def yacs_lrs(path, max_iter=None):
    """``DefaultTrainer``'s schedule: ``build_lr_scheduler`` on an optimizer at BASE_LR."""
    opts = ["SOLVER.MAX_ITER", str(max_iter)] if max_iter else []
    cfg = load_yacs_config(path, opts)
    optimizer = _dummy_optimizer(cfg.SOLVER.BASE_LR)
    return _lrs(build_lr_scheduler(cfg, optimizer), optimizer, cfg.SOLVER.MAX_ITER)


def lazy_lrs(path, max_iter=None):
    """The LazyConfig loop's schedule: ``lr_multiplier`` times ``optimizer.lr`` (LRMultiplier)."""
    cfg = load_lazy_config(path, [f"train.max_iter={max_iter}"] if max_iter else [])
    optimizer = _dummy_optimizer(cfg.optimizer.lr)
    multiplier = instantiate(cfg.lr_multiplier)
    scheduler = LRMultiplier(optimizer, multiplier, max_iter=cfg.train.max_iter)
    return _lrs(scheduler, optimizer, cfg.train.max_iter)


def _cases():
    for path in TWINS:
        for max_iter in MAX_ITER_OVERRIDES:
            marks = []
            if os.sep + "BCCD" + os.sep in path and not bccd_available():
                # configs/BCCD register BCCD from beside the checkout when they load.
                marks = [pytest.mark.skip(reason="BCCD not beside the checkout")]
            yield pytest.param(path, max_iter, marks=marks, id=f"{_rel(path)}-{max_iter or 'own'}")


@pytest.mark.parametrize("path, max_iter", list(_cases()))
def test_twins_have_the_same_learning_rate_at_every_iteration(path, max_iter):
    ylrs = yacs_lrs(path, max_iter)
    llrs = lazy_lrs(os.path.splitext(path)[0] + ".py", max_iter)
    assert len(ylrs) == len(llrs)
    bad = [(it, y, z) for it, (y, z) in enumerate(zip(ylrs, llrs)) if abs(y - z) > 1e-9 * abs(y)]
    assert not bad, f"{_rel(path)}: (iteration, yacs lr, lazy lr), first of {len(bad)}: {bad[:5]}"


def test_overrides_keep_the_synthetic_steps_and_warmup_in_iterations():
    """The schedule itself, written out: warm-up over 100 iterations, steps at 480 and 560."""
    path = str(CONFIGS / "Synthetic" / "faster_rcnn_tiny_FPN_demo.py")
    full, short = lazy_lrs(path), lazy_lrs(path, 500)
    assert len(full) == 600 and len(short) == 500
    assert full[:500] == pytest.approx(short, rel=1e-12)
    assert full[0] == pytest.approx(0.02 * 0.001)
    assert full[50] == pytest.approx(0.02 * (0.001 + 0.999 * 50 / 100))
    assert full[100] == full[479] == pytest.approx(0.02)
    assert full[480] == full[559] == pytest.approx(0.002)
    assert full[560] == full[599] == pytest.approx(0.0002)
    # Shorter than the warm-up: the warm-up spans the run, as in yacs (min(100 / 30, 1)).
    assert lazy_lrs(path, 30)[15] == pytest.approx(0.02 * (0.001 + 0.999 * 15 / 30))


def test_quick_schedules_are_constant():
    path = str(CONFIGS / "quick_schedules" / "faster_rcnn_tiny_FPN_instant_test.py")
    assert lazy_lrs(path) == [0.02] * 4
    assert lazy_lrs(path, 30) == [0.02] * 30
