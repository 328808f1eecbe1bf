"""Every yaml and every LazyConfig under configs/ loads and builds its model on CPU."""

import glob
import os

import pytest
import torch
from detectron2.config import instantiate
from detectron2.modeling import build_model

import d2_sampling  # noqa: F401
from d2_sampling.engine.setup import load_lazy_config, load_yacs_config

from helpers import CONFIGS, bccd_available

YAMLS = sorted(
    p
    for p in glob.glob(str(CONFIGS / "**" / "*.yaml"), recursive=True)
    if not os.path.basename(p).startswith("Base-")
)
LAZIES = sorted(
    p
    for p in glob.glob(str(CONFIGS / "**" / "*.py"), recursive=True)
    if os.sep + "common" + os.sep not in p
)


def _rel(p):
    return os.path.relpath(p, CONFIGS)


def _needs_data(paths):
    """The configs/BCCD ones register BCCD from beside the checkout: skipped without it."""
    skip = pytest.mark.skipif(not bccd_available(), reason="BCCD not beside the checkout")
    return [
        pytest.param(p, marks=skip) if os.sep + "BCCD" + os.sep in p else pytest.param(p)
        for p in paths
    ]


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _build_yacs(path):
    cfg = load_yacs_config(path, ["MODEL.DEVICE", "cpu"])
    return cfg, build_model(cfg)


def _build_lazy(path):
    cfg = load_lazy_config(path, [])
    return cfg, instantiate(cfg.model)


def test_configs_found():
    assert len(YAMLS) >= 6 and len(LAZIES) >= 6, (YAMLS, LAZIES)


@pytest.mark.parametrize("path", _needs_data(YAMLS), ids=_rel)
def test_yacs_config_builds(path):
    cfg, model = _build_yacs(path)
    assert cfg.MODEL.DEVICE == "cpu"
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("path", _needs_data(LAZIES), ids=_rel)
def test_lazy_config_builds(path):
    cfg, model = _build_lazy(path)
    for key in ("dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{_rel(path)} lacks {key}"
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("path", _needs_data(LAZIES), ids=_rel)
def test_lazy_config_evaluates_the_tasks_of_its_model(path):
    """segm is evaluated iff the model has a mask head (Detectron2 would infer it per run)."""
    from d2_sampling.evaluation import COCOEvaluator

    cfg, model = _build_lazy(path)
    evaluator = cfg.dataloader.evaluator
    assert evaluator._target_ is COCOEvaluator, _rel(path)
    roi_heads = getattr(model, "roi_heads", None)
    mask_on = bool(getattr(roi_heads, "mask_on", False))
    assert ("segm" in evaluator.tasks) == mask_on
    assert "bbox" in evaluator.tasks


TWINS = [p for p in YAMLS if os.path.splitext(p)[0] + ".py" in LAZIES]


@pytest.mark.parametrize("path", _needs_data(TWINS), ids=_rel)
def test_yacs_and_lazy_twins_build_the_same_model(path):
    """A method exists in both systems with the same defaults: same modules, same shapes."""
    torch.manual_seed(0)
    _, ymodel = _build_yacs(path)
    _, lmodel = _build_lazy(os.path.splitext(path)[0] + ".py")
    assert type(ymodel) is type(lmodel)
    assert type(ymodel.backbone) is type(lmodel.backbone)
    assert _shapes(ymodel) == _shapes(lmodel)
    yroi, lroi = getattr(ymodel, "roi_heads", None), getattr(lmodel, "roi_heads", None)
    if yroi is not None:
        assert type(yroi) is type(lroi)
        for attr in ("batch_size_per_image", "positive_fraction", "num_classes"):
            assert getattr(yroi, attr) == getattr(lroi, attr), attr
        # One predictor, or one per stage (Cascade R-CNN).
        ypreds, lpreds = yroi.box_predictor, lroi.box_predictor
        if not isinstance(ypreds, torch.nn.ModuleList):
            ypreds, lpreds = [ypreds], [lpreds]
        assert len(ypreds) == len(lpreds)
        for ypred, lpred in zip(ypreds, lpreds):
            assert type(ypred) is type(lpred)
            assert ypred.box_reg_loss_type == lpred.box_reg_loss_type
            yw, lw = ypred.box2box_transform.weights, lpred.box2box_transform.weights
            assert [float(w) for w in yw] == [float(w) for w in lw]
            assert getattr(ypred, "balanced_l1", None) == getattr(lpred, "balanced_l1", None)
        for attr in ("ohem_batch_size_per_image", "ohem_loss", "num_bins", "floor_thr"):
            assert getattr(yroi, attr, None) == getattr(lroi, attr, None), attr
    ybfp = getattr(ymodel.backbone, "refine_level", None)
    assert ybfp == getattr(lmodel.backbone, "refine_level", None)


def test_every_config_has_a_twin():
    """Each yaml has a LazyConfig twin and vice versa (same path, other suffix)."""
    ystems = {os.path.splitext(p)[0] for p in YAMLS}
    lstems = {os.path.splitext(p)[0] for p in LAZIES}
    assert ystems == lstems, {"yaml only": ystems - lstems, "py only": lstems - ystems}


def test_config_reference_is_up_to_date():
    """docs/config_reference.md lists every key with its current default."""
    import subprocess
    import sys

    from helpers import REPO

    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "config_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
