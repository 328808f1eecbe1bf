"""Pieces shared by the training-iteration benchmarks (bench_ohem.py, bench_iou_balanced.py,
bench_atss.py, bench_libra_fcos.py, bench_samplers.py)."""

import copy
import statistics
import time
from pathlib import Path

import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from d2_sampling.data import prepare_datasets
from d2_sampling.engine import load_yacs_config

REPO = Path(__file__).resolve().parents[1]


def load_cfg(config, opts):
    """
    The yacs config ``configs/<config>`` with ``opts``, loaded as ``train_net.py`` loads it,
    on the CPU, with no weights to load.
    """
    return load_yacs_config(
        str(REPO / "configs" / config), [*opts, "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""]
    )


def fixed_batch(cfg, num_images, size):
    """``num_images`` annotated synthetic images, mapped once at a fixed size (no flip)."""
    prepare_datasets(["synthetic_mini_train"])
    dicts = [d for d in DatasetCatalog.get("synthetic_mini_train") if d["annotations"]]
    mapper = DatasetMapper(cfg, is_train=True)
    mapper.augmentations = T.AugmentationList([T.ResizeShortestEdge(size, max_size=448)])
    return [mapper(copy.deepcopy(d)) for d in dicts[:num_images]]


def training_step(cfg, batch, seed=0):
    """
    A function running one training iteration (forward, backward, SGD step) of the model of
    ``cfg`` on ``batch``; the model is built under ``torch.manual_seed(seed)``, so that models
    of configs that differ only in their sampler start from the same weights.
    """
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.train()
    optimizer = build_optimizer(cfg, model)

    def step():
        loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step.model = model
    return step


def time_interleaved(steps, iters, warmup):
    """
    Median ms of each of ``steps`` (name -> function), run in turn iteration by iteration (the
    order reversed every other iteration) so that load changes on a shared machine hit them
    alike; the first ``warmup`` iterations are not timed. Inside one ``EventStorage``.
    """
    times = {name: [] for name in steps}
    with EventStorage():
        for i in range(warmup + iters):
            for name in steps if i % 2 == 0 else reversed(list(steps)):
                t = time.perf_counter()
                steps[name]()
                if i >= warmup:
                    times[name].append((time.perf_counter() - t) * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}
