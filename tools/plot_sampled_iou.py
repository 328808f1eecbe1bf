#!/usr/bin/env python
"""
The IoU distribution of the negatives an ROI sampler picks, on real data: Libra R-CNN's
Figure 2 (arXiv 1904.02701) redone with our samplers.

A Faster R-CNN is run over a dataset; for each image, its training-time ROI pool (RPN
proposals with the training top-k, plus the GT boxes) is matched to the GTs as
``StandardROIHeads`` does, and three pickers choose the same number of negatives:

- random: Detectron2's ``subsample_labels`` (what ``StandardROIHeads`` trains on);
- IoU-balanced: ``iou_balanced_subsample`` (Libra settings: K = 3, no floor set);
- hard: the negatives with the highest classification loss under the model's own box head
  (what OHEM would pick, without NMS).

The histograms of their IoUs with the GTs are plotted, with the pool of all negatives for
reference. Without ``--weights``, the model is first trained from scratch with the project's
Trainer (as train_net.py does) for ``--train-iters`` iterations on ``--train-dataset`` (no
pretrained weights are reachable here, so on COCO this is a briefly trained model: its hard
negatives are those of an early model).

    python tools/plot_sampled_iou.py --out docs/images/iou_balanced_sampled_iou.png \\
        [--config-file configs/Synthetic/faster_rcnn_tiny_FPN_demo.yaml] [--weights W.pth] \\
        [--train-iters 200] [--max-images 80] [--json out.json] [--seed 0] [--output-dir DIR]

Defaults use the COCO slice at ../shared/data/coco_tiny (train2017 to train, val2017 to plot).
``--train-iters 1 --max-images 2`` is the cheap mode (a test runs it so the script does not
rot).
"""

import argparse
import copy
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.modeling.proposal_generator.proposal_utils import (
    add_ground_truth_to_proposals,
)
from detectron2.modeling.sampling import subsample_labels
from detectron2.utils.env import seed_all_rng

import d2_sampling  # noqa: F401  (registers models and datasets)
from d2_sampling.engine import Trainer, load_yacs_config
from d2_sampling.modeling import iou_balanced_subsample
from d2_sampling.modeling.roi_heads import label_proposals

REPO = Path(__file__).resolve().parents[1]
COCO_TINY = REPO.parent / "shared" / "data" / "coco_tiny"
PICKERS = ("random", "hard (by loss)", "IoU-balanced")


def build_cfg(args, output_dir):
    """The config file with the user's overrides, then this tool's settings (which win)."""
    opts = list(args.opts) + [
        "MODEL.ROI_HEADS.NUM_CLASSES",
        args.num_classes,
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
        args.batch_size_per_image,
        "MODEL.ROI_HEADS.POSITIVE_FRACTION",
        args.positive_fraction,
        "DATASETS.COCO_FORMAT",
        [list(args.train_dataset), list(args.dataset)],
        "DATASETS.TRAIN",
        (args.train_dataset[0],),
        "DATASETS.TEST",
        (),
        "DATALOADER.NUM_WORKERS",
        0,
        "SOLVER.IMS_PER_BATCH",
        args.train_batch,
        # The brief training: constant learning rate after a linear warm-up, one checkpoint.
        "SOLVER.MAX_ITER",
        args.train_iters,
        "SOLVER.STEPS",
        (),
        "SOLVER.WARMUP_ITERS",
        max(1, min(100, args.train_iters // 4)),
        "SOLVER.CHECKPOINT_PERIOD",
        args.train_iters + 1,
        "SEED",
        args.seed,
        "OUTPUT_DIR",
        str(output_dir),
    ]
    return load_yacs_config(args.config_file, opts)


def train_briefly(cfg):
    """From scratch with the project's Trainer (checkpoint, metrics.json in cfg.OUTPUT_DIR)."""
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer.model


@torch.no_grad()
def sample_image(model, d, args):
    """The three pickers' negatives for one mapped image: dict picker -> IoUs (numpy)."""
    heads = model.roi_heads
    images = model.preprocess_image([d])
    features = model.backbone(images.tensor)
    targets = [d["instances"].to(images.tensor.device)]
    proposals, _ = model.proposal_generator(images, features)
    proposals = add_ground_truth_to_proposals(targets, proposals)
    bg = heads.num_classes
    # Labelled exactly as the ROI heads label them.
    labelled = label_proposals(proposals[0], targets[0], heads.proposal_matcher, bg)
    labels, ious = labelled.gt_classes, labelled.ious

    num, frac = heads.batch_size_per_image, heads.positive_fraction
    _, rand_neg = subsample_labels(labels, num, frac, bg)
    _, bal_neg = iou_balanced_subsample(
        labels, ious, num, frac, bg, num_bins=args.num_bins, gt_indices=labelled.matched_idxs
    )
    # Hard negatives: classification loss of every negative under the model's box head.
    negatives = torch.nonzero(labels == bg).view(-1)
    feats = [features[f] for f in heads.box_in_features]
    box_feats = heads.box_head(heads.box_pooler(feats, [proposals[0].proposal_boxes[negatives]]))
    scores, _ = heads.box_predictor(box_feats)
    loss = F.cross_entropy(scores, torch.full_like(negatives, bg), reduction="none")
    hard_neg = negatives[loss.topk(min(rand_neg.numel(), negatives.numel())).indices]
    return {
        "pool": ious[negatives].numpy(),
        "random": ious[rand_neg].numpy(),
        "hard (by loss)": ious[hard_neg].numpy(),
        "IoU-balanced": ious[bal_neg].numpy(),
    }


def plot(result, out, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.array(result["bin_edges"])
    centers, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    colors = {"random": "#7f7f7f", "hard (by loss)": "#d62728", "IoU-balanced": "#1f77b4"}
    bar_w = width / (len(PICKERS) + 1)
    for i, name in enumerate(PICKERS):
        h = np.array(result["histograms"][name], dtype=float)
        ax.bar(
            centers + (i - 1) * bar_w,
            100 * h / max(h.sum(), 1),
            bar_w,
            label=(f"{name}: mean IoU {result['mean_iou'][name]:.3f}"),
            color=colors[name],
        )
    pool = np.array(result["histograms"]["pool"], dtype=float)
    ax.step(
        edges,
        np.append(100 * pool / max(pool.sum(), 1), 0),
        where="post",
        color="k",
        linestyle="--",
        linewidth=1,
        label="all negatives (the pool)",
    )
    ax.set_xlabel("IoU of the negative with its best-matching ground truth")
    ax.set_ylabel("share of the picked negatives (%)")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config-file", default=str(REPO / "configs/Synthetic/faster_rcnn_tiny_FPN_demo.yaml")
    )
    parser.add_argument("--weights", help="a trained model (skips the brief training)")
    parser.add_argument(
        "--train-dataset",
        nargs=3,
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        default=[
            "coco_tiny_train",
            str(COCO_TINY / "annotations/instances_train2017.json"),
            str(COCO_TINY / "train2017"),
        ],
    )
    parser.add_argument(
        "--dataset",
        nargs=3,
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        default=[
            "coco_tiny_val",
            str(COCO_TINY / "annotations/instances_val2017.json"),
            str(COCO_TINY / "val2017"),
        ],
        help="the images to plot",
    )
    parser.add_argument("--num-classes", type=int, default=80)
    parser.add_argument("--train-iters", type=int, default=200)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--save-weights", help="write the briefly trained model here")
    parser.add_argument("--max-images", type=int, default=80)
    parser.add_argument("--size", type=int, default=320, help="shorter image side")
    parser.add_argument("--batch-size-per-image", type=int, default=512, help="Libra: 512")
    parser.add_argument("--positive-fraction", type=float, default=0.25)
    parser.add_argument("--num-bins", type=int, default=3)
    parser.add_argument("--pre-nms-topk", type=int, default=2000, help="RPN, per level")
    parser.add_argument("--post-nms-topk", type=int, default=1000, help="RPN, per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--output-dir", help="training output (checkpoint, metrics.json); default: a temp folder"
    )
    parser.add_argument("--out", default=str(REPO / "docs/images/iou_balanced_sampled_iou.png"))
    parser.add_argument("--json", help="also write the histograms here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="yacs KEY VALUE overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_all_rng(args.seed)

    def log(msg):
        print(f"[plot_sampled_iou] {msg}", flush=True)

    with tempfile.TemporaryDirectory(prefix="plot_sampled_iou_") as tmp:
        cfg = build_cfg(args, args.output_dir or tmp)
        if args.weights:
            model = build_model(cfg)
            DetectionCheckpointer(model).load(args.weights)
            trained = f"weights {args.weights}"
        else:
            log(f"training from scratch, {args.train_iters} iterations on {args.train_dataset[0]}")
            model = train_briefly(cfg)
            trained = f"trained from scratch {args.train_iters} iters on {args.train_dataset[0]}"
            if args.save_weights:
                torch.save({"model": model.state_dict()}, args.save_weights)
    model.eval()
    rpn = model.proposal_generator
    # A training-time ROI pool, sized as Detectron2's COCO configs (2000 per level before NMS,
    # 1000 after), larger than the ROI batch: with the small CPU configs' 500 it would be
    # nearly all sampled, whatever the sampler.
    rpn.pre_nms_topk[False], rpn.post_nms_topk[False] = args.pre_nms_topk, args.post_nms_topk

    mapper = DatasetMapper(cfg, is_train=True)
    mapper.augmentations = T.AugmentationList(
        [T.ResizeShortestEdge(args.size, max_size=cfg.INPUT.MAX_SIZE_TRAIN)]
    )
    dicts = DatasetCatalog.get(args.dataset[0])[: args.max_images]
    picked = {k: [] for k in ("pool",) + PICKERS}
    for d in dicts:
        for k, v in sample_image(model, mapper(copy.deepcopy(d)), args).items():
            picked[k].append(v)
    picked = {k: np.concatenate(v) for k, v in picked.items()}

    edges = np.linspace(0.0, 0.5, 11)
    result = {
        "model": f"{os.path.relpath(args.config_file, REPO)}, {trained}",
        "dataset": args.dataset[0],
        "images": len(dicts),
        "batch_size_per_image": args.batch_size_per_image,
        "positive_fraction": args.positive_fraction,
        "num_bins": args.num_bins,
        "rpn_topk": [args.pre_nms_topk, args.post_nms_topk],
        "bin_edges": edges.tolist(),
        "histograms": {k: np.histogram(v, edges)[0].tolist() for k, v in picked.items()},
        "counts": {k: int(v.size) for k, v in picked.items()},
        "mean_iou": {k: float(v.mean()) if v.size else 0.0 for k, v in picked.items()},
        "share_iou_ge_0.05": {
            k: float((v >= 0.05).mean()) if v.size else 0.0 for k, v in picked.items()
        },
    }
    title = (
        f"Negatives picked per image on {args.dataset[0]} ({len(dicts)} images), "
        f"{args.batch_size_per_image} ROIs, {args.positive_fraction:.0%} positives\n"
        f"model: {result['model']}"
    )
    plot(result, args.out, title)
    log(f"wrote {args.out}")
    for k in ("pool",) + PICKERS:
        log(
            f"{k:>15}: {result['counts'][k]:6d} negatives, mean IoU {result['mean_iou'][k]:.3f}, "
            f"IoU >= 0.05: {result['share_iou_ge_0.05'][k]:.1%}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
