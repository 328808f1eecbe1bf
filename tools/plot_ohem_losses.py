#!/usr/bin/env python
"""
Plot the per-RoI loss of the whole OHEM pool against the RoIs OHEM selects, on a real batch.

Trains the TinyNet-FPN Faster R-CNN of configs/Synthetic/ (OHEM, paper settings) from scratch,
with the project's Trainer (as train_net.py does), for a few hundred iterations on the COCO
slice coco_tiny (no pretrained weights can be downloaded here, so the detector is weak: the
picture shows how the selection behaves on real images and proposals, not a converged
detector), then takes two validation images, runs the backbone and RPN, labels the pool and
scores it with the read-only pass, and selects with both recipes:

- paper: ranking by cls + box loss, NMS 0.7, 64 RoIs per image, no foreground quota;
- MMDetection: ranking by classification loss, no NMS, 512 RoIs per image, 25% foreground.

    python tools/plot_ohem_losses.py [--iters 300] [--out docs/images/ohem_loss_distribution.png]
                                     [--seed 0] [--output-dir DIR] [--json out.json]

``--iters 1`` is the cheap mode (a test runs it so the script does not rot).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

import d2_sampling  # noqa: F401  (registers models and datasets)
from d2_sampling.engine import Trainer, load_yacs_config
from d2_sampling.modeling import fast_rcnn_per_roi_losses, select_hard_examples

REPO = Path(__file__).resolve().parents[1]
COCO_TINY = REPO.parent / "shared" / "data" / "coco_tiny"
CONFIG = REPO / "configs/Synthetic/faster_rcnn_tiny_FPN_ohem.yaml"


def build_cfg(args, output_dir):
    root = Path(args.coco_root)
    datasets = [
        [
            f"ohem_plot_coco_tiny_{split}",
            str(root / "annotations" / f"instances_{split}2017.json"),
            str(root / f"{split}2017"),
        ]
        for split in ("train", "val")
    ]
    opts = [
        "MODEL.DEVICE",
        "cpu",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        80,
        "MODEL.PIXEL_MEAN",
        [103.53, 116.28, 123.675],
        "MODEL.PIXEL_STD",
        [57.375, 57.12, 58.395],
        "DATASETS.COCO_FORMAT",
        datasets,
        "DATASETS.TRAIN",
        ("ohem_plot_coco_tiny_train",),
        "DATASETS.TEST",
        (),
        "DATALOADER.NUM_WORKERS",
        0,
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
        "SEED",
        args.seed,
        "OUTPUT_DIR",
        str(output_dir),
    ]
    return load_yacs_config(str(CONFIG), opts)


def train_briefly(cfg):
    """Train with the project's Trainer (checkpoint and metrics.json in cfg.OUTPUT_DIR)."""
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    t0 = time.time()
    trainer.train()
    print(f"trained {cfg.SOLVER.MAX_ITER} iterations in {time.time() - t0:.0f} s")
    return trainer.model


@torch.no_grad()
def score_real_batch(model, cfg, num_images):
    """Pool, per-RoI losses (cls and box separately) and both selections for real images."""
    mapper = DatasetMapper(cfg, is_train=True)
    dicts = [d for d in DatasetCatalog.get("ohem_plot_coco_tiny_val") if d["annotations"]]
    batch = [mapper(d) for d in dicts[:num_images]]
    heads = model.roi_heads
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
        paper = select_hard_examples(c + b, 64, boxes=pool.proposal_boxes.tensor, nms_thresh=0.7)
        mmdet = select_hard_examples(c, 512, is_foreground=fg, positive_fraction=0.25)
        for key, value in (("cls", c), ("box", b), ("fg", fg)):
            out[key].append(value.numpy())
        for key, idx in (("paper", paper), ("mmdet", mmdet)):
            mask = np.zeros(len(pool), dtype=bool)
            mask[idx.numpy()] = True
            out[key].append(mask)
    return {k: np.concatenate(v) for k, v in out.items()}, sizes


def plot(data, sizes, path, iters):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = [
        (
            "paper: cls+box loss, NMS 0.7, 64/img, no quota",
            data["cls"] + data["box"],
            data["paper"],
        ),
        ("MMDetection: cls loss, no NMS, 512/img, 25% fg", data["cls"], data["mmdet"]),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    stats = {}
    for col, (title, loss, sel) in enumerate(recipes):
        fg = data["fg"]
        floor = max(loss[loss > 0].min(), 1e-4) if (loss > 0).any() else 1e-4
        bins = np.logspace(np.log10(floor), np.log10(loss.max() * 1.05), 40)
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
        ax.set_xlabel("per-RoI ranking loss")
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
        ax.set_xlabel("rank in the pool (both images)")
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
        }
    fig.suptitle(
        f"OHEM on a real batch: {len(sizes)} coco_tiny val images, pools of {sizes} RoIs; "
        f"TinyNet-FPN Faster R-CNN trained from scratch for {iters} iterations",
        fontsize=11,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coco-root", default=str(COCO_TINY))
    parser.add_argument("--iters", type=int, default=300, help="training iterations first")
    parser.add_argument("--images", type=int, default=2, help="images in the plotted batch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output-dir", help="training output (checkpoint, metrics.json); default: a temp folder"
    )
    parser.add_argument("--out", default=str(REPO / "docs/images/ohem_loss_distribution.png"))
    parser.add_argument("--json", help="also write the summary numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_all_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="plot_ohem_losses_") as tmp:
        cfg = build_cfg(args, args.output_dir or tmp)
        model = train_briefly(cfg)
        data, sizes = score_real_batch(model, cfg, args.images)
    stats = plot(data, sizes, args.out, args.iters)
    print(json.dumps(stats, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"iters": args.iters, "pool_sizes": sizes, **stats}, f, indent=2)


if __name__ == "__main__":
    main()
