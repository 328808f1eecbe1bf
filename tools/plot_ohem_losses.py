#!/usr/bin/env python
"""
Plot the per-RoI loss of the whole OHEM pool against the RoIs OHEM selects, on a real batch.

The model is an OHEM Faster R-CNN config (``--config-file``; its ``OHEMROIHeads`` builds the
pool exactly as OHEM training does). With ``--weights`` it is that checkpoint, nothing is
trained and the config is used as it is: the docs' picture is the converged,
ImageNet-pretrained BCCD baseline (trained with random sampling; its weights load into the OHEM
config, whose only difference is the ROI heads' class), scored on BCCD val. Without
``--weights`` (the defaults), it trains the TinyNet-FPN Faster R-CNN of configs/Synthetic/
(OHEM, paper settings) from scratch with the project's Trainer (as train_net.py does) for
``--iters`` iterations on the COCO slice coco_tiny, a weak detector.

Then it takes ``--images`` images of ``--dataset`` (default: coco_tiny val) with annotations,
mapped as for training, runs the backbone and RPN in training mode (the training top-k, GT
appended), labels the pool and scores it with the read-only pass, and selects with both
recipes:

- paper: ranking by cls + box loss, NMS 0.7, ``--paper-batch-size`` (64) RoIs per image, no
  foreground quota (the ``MODEL.OHEM`` defaults, as in ``*_ohem.yaml``);
- MMDetection: ranking by classification loss, no NMS, ``--mmdet-batch-size`` (512, its COCO
  setting) RoIs per image, 25% foreground (``*_ohem_mmdet.yaml``; the BCCD and synthetic ones
  keep their baseline's 128).

    python tools/plot_ohem_losses.py \\
        --config-file configs/BCCD/faster_rcnn_effnetlite0_FPN_ohem.yaml --weights W.pth \\
        --voc-dataset bccd_val ../shared/data/bccd val --dataset bccd_val --images 4 \\
        --mmdet-batch-size 128 --json out.json --out docs/images/ohem_loss_distribution.png
    python tools/plot_ohem_losses.py [--iters 300] [--out x.png] [--seed 0] [--output-dir DIR]
        [--json out.json] [KEY VALUE ...]

``--iters 1`` is the cheap mode (a test runs it so the script does not rot).
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

import d2_sampling  # noqa: F401  (registers models and datasets)
from d2_sampling.engine import Trainer, load_yacs_config
from d2_sampling.engine.checkpoint import load_eval_weights
from d2_sampling.engine.setup import (
    add_dataset_arguments,
    register_cli_datasets,
    register_cli_voc_datasets,
)
from d2_sampling.modeling import fast_rcnn_per_roi_losses, select_hard_examples

REPO = Path(__file__).resolve().parents[1]
COCO_TINY = REPO.parent / "shared" / "data" / "coco_tiny"
CONFIG = REPO / "configs/Synthetic/faster_rcnn_tiny_FPN_ohem.yaml"
COCO_TRAIN, COCO_VAL = "ohem_plot_coco_tiny_train", "ohem_plot_coco_tiny_val"


def build_cfg(args, output_dir):
    """
    With ``--weights``: the config as it is, with the user's overrides, on CPU, nothing to
    train. Without: the from-scratch recipe on coco_tiny below (meant for the TinyNet config).
    """
    run = [
        "DATASETS.TEST",
        (),
        "DATALOADER.NUM_WORKERS",
        0,
        "SEED",
        args.seed,
        "OUTPUT_DIR",
        str(output_dir),
    ]
    if args.weights:
        opts = list(args.opts) + ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", ()] + run
        return load_yacs_config(args.config_file, opts)
    opts = (
        list(args.opts)
        + [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.ROI_HEADS.NUM_CLASSES",
            80,
            "MODEL.PIXEL_MEAN",
            [103.53, 116.28, 123.675],
            "MODEL.PIXEL_STD",
            [57.375, 57.12, 58.395],
            "DATASETS.TRAIN",
            (COCO_TRAIN,),
            "INPUT.MIN_SIZE_TRAIN",
            (320,),
            "INPUT.MAX_SIZE_TRAIN",
            512,
            # RoI pools of COCO-config size: ~1000 RPN proposals per image (+ ground truth).
            "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
            2000,
            "MODEL.RPN.POST_NMS_TOPK_TRAIN",
            1000,
            "SOLVER.IMS_PER_BATCH",
            2,
            "SOLVER.BASE_LR",
            0.01,
            "SOLVER.WARMUP_ITERS",
            100,
            # From scratch at batch 2: clip, or the first hundred steps can diverge.
            "SOLVER.CLIP_GRADIENTS.ENABLED",
            True,
            "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
            "norm",
            "SOLVER.CLIP_GRADIENTS.CLIP_VALUE",
            5.0,
            "SOLVER.MAX_ITER",
            args.iters,
            "SOLVER.STEPS",
            (),
            # One checkpoint, at the end.
            "SOLVER.CHECKPOINT_PERIOD",
            args.iters + 1,
        ]
        + run
    )
    return load_yacs_config(args.config_file, opts)


def register_datasets(args):
    """coco_tiny's two splits (when training or plotting them), then --voc-dataset's."""
    if not args.weights or args.dataset == COCO_VAL:
        root = Path(args.coco_root)
        register_cli_datasets(
            [
                [
                    f"ohem_plot_coco_tiny_{split}",
                    str(root / "annotations" / f"instances_{split}2017.json"),
                    str(root / f"{split}2017"),
                ]
                for split in ("train", "val")
            ]
        )
    register_cli_voc_datasets(args.voc_dataset or [])


def load_weights(cfg, path):
    model = build_model(cfg)
    # Strict: every parameter and buffer of the model from the file, shapes equal.
    load_eval_weights(model, path, "", resume=False, key="--weights")
    return model


def train_briefly(cfg):
    """Train with the project's Trainer (checkpoint and metrics.json in cfg.OUTPUT_DIR)."""
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    t0 = time.time()
    trainer.train()
    print(f"trained {cfg.SOLVER.MAX_ITER} iterations in {time.time() - t0:.0f} s")
    return trainer.model


@torch.no_grad()
def score_real_batch(model, cfg, args):
    """Pool, per-RoI losses (cls and box separately) and both selections for real images."""
    heads = model.roi_heads
    if not hasattr(heads, "label_pool"):
        raise SystemExit(
            f"plot_ohem_losses.py: {args.config_file} has ROI heads {type(heads).__name__}; "
            "use an OHEM config (ROI_HEADS.NAME OHEMROIHeads, e.g. "
            "configs/BCCD/faster_rcnn_effnetlite0_FPN_ohem.yaml: a baseline's weights load into it)"
        )
    mapper = DatasetMapper(cfg, is_train=True)
    dicts = [d for d in DatasetCatalog.get(args.dataset) if d["annotations"]]
    batch = [mapper(d) for d in dicts[: args.images]]
    model.train()  # training-time proposals (post-NMS top-k of training) and GT appended
    with EventStorage():
        images = model.preprocess_image(batch)
        targets = [x["instances"].to(model.device) for x in batch]
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features, targets)
        pools, _ = heads.label_pool(proposals, targets)
        box_features = heads.box_pooler(
            [features[f] for f in heads.box_in_features], [p.proposal_boxes for p in pools]
        )
        predictions = heads.box_predictor(heads.box_head(box_features))
        cls, box = fast_rcnn_per_roi_losses(heads.box_predictor, predictions, pools)
    sizes = [len(p) for p in pools]
    out = {"cls": [], "box": [], "fg": [], "paper": [], "mmdet": []}
    for pool, c, b in zip(pools, cls.split(sizes), box.split(sizes)):
        fg = pool.gt_classes < heads.num_classes
        paper = select_hard_examples(
            c + b, args.paper_batch_size, boxes=pool.proposal_boxes.tensor, nms_thresh=0.7
        )
        mmdet = select_hard_examples(
            c, args.mmdet_batch_size, is_foreground=fg, positive_fraction=0.25
        )
        for key, value in (("cls", c), ("box", b), ("fg", fg)):
            out[key].append(value.numpy())
        for key, idx in (("paper", paper), ("mmdet", mmdet)):
            mask = np.zeros(len(pool), dtype=bool)
            mask[idx.numpy()] = True
            out[key].append(mask)
    ids = [str(d["image_id"]) for d in dicts[: args.images]]
    return {k: np.concatenate(v) for k, v in out.items()}, sizes, ids


def plot(data, sizes, path, args, model_name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = [
        (
            f"paper: cls+box loss, NMS 0.7, {args.paper_batch_size}/img, no quota",
            data["cls"] + data["box"],
            data["paper"],
        ),
        (
            f"MMDetection: cls loss, no NMS, {args.mmdet_batch_size}/img, 25% fg",
            data["cls"],
            data["mmdet"],
        ),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    stats = {}
    for col, (title, loss, sel) in enumerate(recipes):
        fg = data["fg"]
        # Losses below the floor are drawn in the first bin. In float64 with the first edge
        # exactly the floor: a float32 loss clipped to 1e-4 is below np.logspace's 1e-4 and
        # would fall out of the histogram.
        loss = loss.astype(np.float64)
        floor = max(loss[loss > 0].min(), 1e-4) if (loss > 0).any() else 1e-4
        bins = np.logspace(np.log10(floor), np.log10(loss.max() * 1.05), 40)
        bins[0] = floor
        ax = axes[0, col]
        ax.hist(np.maximum(loss, floor), bins=bins, color="0.75", label=f"pool ({len(loss)} RoIs)")
        ax.hist(
            [np.maximum(loss[sel & fg], floor), np.maximum(loss[sel & ~fg], floor)],
            bins=bins,
            stacked=True,
            color=["tab:orange", "tab:blue"],
            label=[
                f"selected fg ({int((sel & fg).sum())})",
                f"selected bg ({int((sel & ~fg).sum())})",
            ],
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"per-RoI ranking loss (first bin: all below {floor:.0e})")
        ax.set_ylabel("RoIs")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)

        ax = axes[1, col]
        order = np.argsort(-loss, kind="stable")
        ranks = np.arange(len(loss))
        ax.plot(ranks, loss[order], color="0.6", lw=1, label="pool, sorted by loss")
        s = sel[order]
        ax.scatter(
            ranks[s & fg[order]],
            loss[order][s & fg[order]],
            s=8,
            color="tab:orange",
            label="selected fg",
        )
        ax.scatter(
            ranks[s & ~fg[order]],
            loss[order][s & ~fg[order]],
            s=8,
            color="tab:blue",
            label="selected bg",
        )
        ax.set_yscale("log")
        ax.set_xlabel(f"rank in the pool (all {len(sizes)} images)")
        ax.set_ylabel("per-RoI ranking loss")
        ax.legend(fontsize=8)
        key = "paper" if col == 0 else "mmdet"
        stats[key] = {
            "pool_size": int(len(loss)),
            "pool_fg": int(fg.sum()),
            "selected": int(sel.sum()),
            "selected_fg": int((sel & fg).sum()),
            "mean_loss_pool": float(loss.mean()),
            "mean_loss_selected": float(loss[sel].mean()),
            "mean_loss_pool_fg": float(loss[fg].mean()) if fg.any() else None,
            "mean_loss_pool_bg": float(loss[~fg].mean()),
            "mean_loss_selected_fg": float(loss[sel & fg].mean()) if (sel & fg).any() else None,
            "mean_loss_selected_bg": float(loss[sel & ~fg].mean()) if (sel & ~fg).any() else None,
            "min_loss_selected": float(loss[sel].min()),
        }
    fig.suptitle(
        f"OHEM on a real batch: {len(sizes)} {args.dataset} images, pools of {sizes} RoIs\n"
        f"{model_name}",
        fontsize=11,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config-file",
        default=str(CONFIG),
        help="an OHEM Faster R-CNN yacs config (default: the synthetic TinyNet one)",
    )
    parser.add_argument("--weights", help="a trained model: no training, the config used as it is")
    parser.add_argument("--coco-root", default=str(COCO_TINY))
    add_dataset_arguments(parser, coco=False, voc=True)
    parser.add_argument(
        "--dataset",
        default=COCO_VAL,
        help=f"the registered dataset whose images are scored (default: {COCO_VAL}, from "
        "--coco-root)",
    )
    parser.add_argument("--iters", type=int, default=300, help="training iterations first")
    parser.add_argument("--images", type=int, default=2, help="images in the plotted batch")
    parser.add_argument("--paper-batch-size", type=int, default=64, help="RoIs per image")
    parser.add_argument("--mmdet-batch-size", type=int, default=512, help="RoIs per image")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output-dir", help="training output (checkpoint, metrics.json); default: a temp folder"
    )
    parser.add_argument("--out", default=str(REPO / "docs/images/ohem_loss_distribution.png"))
    parser.add_argument("--json", help="also write the summary numbers here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="yacs KEY VALUE overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_all_rng(args.seed)
    register_datasets(args)
    config = os.path.relpath(args.config_file, REPO)
    with tempfile.TemporaryDirectory(prefix="plot_ohem_losses_") as tmp:
        cfg = build_cfg(args, args.output_dir or tmp)
        if args.weights:
            model = load_weights(cfg, args.weights)
            model_name = f"{config}, weights {os.path.join(*Path(args.weights).parts[-3:])}"
        else:
            model = train_briefly(cfg)
            model_name = f"{config}, trained from scratch for {args.iters} iterations"
        data, sizes, ids = score_real_batch(model, cfg, args)
    stats = plot(data, sizes, args.out, args, model_name)
    print(json.dumps(stats, indent=2))
    if args.json:
        summary = {
            "config": config,
            "weights": os.path.abspath(args.weights) if args.weights else None,
            "iters": None if args.weights else args.iters,
            "dataset": args.dataset,
            "image_ids": ids,
            "pool_sizes": sizes,
            "paper_batch_size": args.paper_batch_size,
            "mmdet_batch_size": args.mmdet_batch_size,
        }
        with open(args.json, "w") as f:
            json.dump({**summary, **stats}, f, indent=2)


if __name__ == "__main__":
    main()
