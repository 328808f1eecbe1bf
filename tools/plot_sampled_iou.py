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
reference. With ``--weights``, the model is that checkpoint (nothing is trained). Without, it
is first trained from scratch with the project's Trainer (as train_net.py does) for
``--train-iters`` iterations on ``--train-dataset``: a briefly trained model, whose hard
negatives are those of an early model.

The converged picture of docs/iou_balanced.md, the BCCD baseline on BCCD val:

    python tools/plot_sampled_iou.py \\
        --config-file configs/BCCD/faster_rcnn_effnetlite0_FPN.yaml --weights W.pth \\
        --voc-dataset bccd_val ../shared/data/bccd val --dataset bccd_val \\
        --roi-settings config --max-images 87 --json out.json \\
        --out docs/images/iou_balanced_sampled_iou.png

The quick picture, from scratch on the COCO slice at ../shared/data/coco_tiny (train2017 to
train, val2017 to plot; the defaults):

    python tools/plot_sampled_iou.py --out x.png \\
        [--config-file configs/Synthetic/faster_rcnn_tiny_FPN_demo.yaml] [--weights W.pth] \\
        [--train-iters 200] [--max-images 80] [--json out.json] [--seed 0] [--output-dir DIR]

Datasets: ``--dataset`` / ``--train-dataset`` take ``NAME JSON IMAGE_ROOT`` (a COCO-format
dataset, registered under NAME) or just ``NAME``: one registered by ``--voc-dataset NAME DIR
SPLIT`` (Pascal VOC layout, as train_net.py's), by the config's ``DATASETS.*_FORMAT`` or a
built-in one. The class count is the plotted dataset's unless ``--num-classes`` says.

ROI settings (``--roi-settings``): ``libra`` (default) is Libra R-CNN's COCO setting, 512
ROIs per image with 25% positives, RPN pools of 2000 proposals per level before NMS and 1000
after, images of 320 px; ``config`` takes them from the model's config (``MODEL.ROI_HEADS.
BATCH_SIZE_PER_IMAGE`` / ``POSITIVE_FRACTION``, ``MODEL.RPN.*_NMS_TOPK_TRAIN``,
``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TRAIN``, ``MODEL.IOU_BALANCED.NUM_BINS``): the pool and
batch that model trains on. ``--batch-size-per-image`` etc. override either.

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
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.modeling.proposal_generator.proposal_utils import (
    add_ground_truth_to_proposals,
)
from detectron2.modeling.sampling import subsample_labels
from detectron2.utils.env import seed_all_rng

import d2_sampling  # noqa: F401  (registers models and datasets)
from d2_sampling.engine import Trainer, load_yacs_config
from d2_sampling.engine.checkpoint import load_eval_weights
from d2_sampling.engine.setup import (
    add_dataset_arguments,
    register_cli_datasets,
    register_cli_voc_datasets,
)
from d2_sampling.modeling import iou_balanced_subsample
from d2_sampling.modeling.roi_heads import label_proposals

REPO = Path(__file__).resolve().parents[1]
COCO_TINY = REPO.parent / "shared" / "data" / "coco_tiny"
PICKERS = ("random", "hard (by loss)", "IoU-balanced")
# --roi-settings libra: Libra R-CNN's COCO setting (512 ROIs, 25% positives, K = 3), in RPN
# pools of Detectron2's COCO size (2000 per level before NMS, 1000 after): with the small CPU
# configs' 500 the pool would be nearly all sampled, whatever the sampler.
LIBRA = dict(
    batch_size_per_image=512,
    positive_fraction=0.25,
    num_bins=3,
    pre_nms_topk=2000,
    post_nms_topk=1000,
    size=320,
)
DEFAULT_TRAIN = [
    "coco_tiny_train",
    str(COCO_TINY / "annotations/instances_train2017.json"),
    str(COCO_TINY / "train2017"),
]
DEFAULT_PLOT = [
    "coco_tiny_val",
    str(COCO_TINY / "annotations/instances_val2017.json"),
    str(COCO_TINY / "val2017"),
]


def config_roi_settings(cfg):
    """--roi-settings config: what the model trains on, read from its config."""
    return dict(
        batch_size_per_image=cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
        positive_fraction=cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION,
        num_bins=cfg.MODEL.IOU_BALANCED.NUM_BINS,
        pre_nms_topk=cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN,
        post_nms_topk=cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN,
        # One deterministic size: the test size (the middle of the training sizes in the
        # BCCD configs).
        size=cfg.INPUT.MIN_SIZE_TEST,
    )


def dataset_arg(parser, value, flag):
    """``NAME`` or ``NAME JSON IMAGE_ROOT`` (a COCO-format dataset) -> the list, checked."""
    if len(value) not in (1, 3):
        parser.error(
            f"{flag} takes NAME (a registered dataset) or NAME JSON IMAGE_ROOT, got {value}"
        )
    return list(value)


def register_datasets(args):
    """--voc-dataset entries, then the COCO-format --dataset / --train-dataset triples."""
    register_cli_voc_datasets(args.voc_dataset or [])
    register_cli_datasets([d for d in (args.dataset, args.train_dataset) if d and len(d) == 3])


def build_cfg(args, output_dir):
    """
    The config file with the user's overrides, then this tool's settings (which win); the ROI
    settings resolved into ``args`` (``--roi-settings``, then the explicit options).
    """
    opts = list(args.opts) + [
        "DATASETS.TRAIN",
        (args.train_dataset[0],) if args.train_dataset else (),
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
    cfg = load_yacs_config(args.config_file, opts)
    base = LIBRA if args.roi_settings == "libra" else config_roi_settings(cfg)
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.num_classes is None:
        # The plotted dataset's classes (its json is read now if need be).
        DatasetCatalog.get(args.dataset[0])
        args.num_classes = len(MetadataCatalog.get(args.dataset[0]).thing_classes)
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = args.num_classes
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = args.batch_size_per_image
    cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION = args.positive_fraction
    cfg.freeze()
    return cfg


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
    fig, ax = plt.subplots(figsize=(8, 4.5))
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
    add_dataset_arguments(parser, coco=False, voc=True)
    parser.add_argument(
        "--train-dataset",
        nargs="+",
        metavar="NAME [JSON IMAGE_ROOT]",
        help="what the model is trained on without --weights: a registered name, or a "
        "COCO-format NAME JSON IMAGE_ROOT (default: coco_tiny train2017)",
    )
    parser.add_argument(
        "--dataset",
        nargs="+",
        metavar="NAME [JSON IMAGE_ROOT]",
        help="the images to plot: a registered name, or a COCO-format NAME JSON IMAGE_ROOT "
        "(default: coco_tiny val2017)",
    )
    parser.add_argument(
        "--num-classes", type=int, help="default: the number of classes of --dataset"
    )
    parser.add_argument("--train-iters", type=int, default=200)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--save-weights", help="write the briefly trained model here")
    parser.add_argument("--max-images", type=int, default=80)
    parser.add_argument(
        "--roi-settings",
        choices=("libra", "config"),
        default="libra",
        help="libra: 512 ROIs, 25%% positives, K = 3, RPN top-k 2000/1000, 320 px; config: "
        "the model config's (ROI batch and positive fraction, RPN training top-k, test size, "
        "MODEL.IOU_BALANCED.NUM_BINS). The options below override either",
    )
    parser.add_argument("--size", type=int, help="shorter image side")
    parser.add_argument("--batch-size-per-image", type=int, help="ROIs per image")
    parser.add_argument("--positive-fraction", type=float)
    parser.add_argument("--num-bins", type=int, help="K of the IoU-balanced picker")
    parser.add_argument("--pre-nms-topk", type=int, help="RPN, per level")
    parser.add_argument("--post-nms-topk", type=int, help="RPN, per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--output-dir", help="training output (checkpoint, metrics.json); default: a temp folder"
    )
    parser.add_argument("--out", default=str(REPO / "docs/images/iou_balanced_sampled_iou.png"))
    parser.add_argument("--json", help="also write the histograms here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="yacs KEY VALUE overrides")
    args = parser.parse_args(argv)
    args.dataset = dataset_arg(parser, args.dataset or DEFAULT_PLOT, "--dataset")
    if args.weights:
        args.train_dataset = None  # nothing is trained
    else:
        args.train_dataset = dataset_arg(
            parser, args.train_dataset or DEFAULT_TRAIN, "--train-dataset"
        )
    torch.set_num_threads(args.threads)
    seed_all_rng(args.seed)
    register_datasets(args)

    def log(msg):
        print(f"[plot_sampled_iou] {msg}", flush=True)

    with tempfile.TemporaryDirectory(prefix="plot_sampled_iou_") as tmp:
        cfg = build_cfg(args, args.output_dir or tmp)
        if args.weights:
            model = build_model(cfg)
            # Strict: every parameter and buffer of the model from the file, shapes equal.
            load_eval_weights(model, args.weights, "", resume=False, key="--weights")
            # The title names the run's folder and file, the json the whole path.
            trained = f"weights {os.path.join(*Path(args.weights).parts[-3:])}"
            weights = os.path.abspath(args.weights)
        else:
            log(f"training from scratch, {args.train_iters} iterations on {args.train_dataset[0]}")
            model = train_briefly(cfg)
            trained = f"trained from scratch {args.train_iters} iters on {args.train_dataset[0]}"
            weights = None
            if args.save_weights:
                torch.save({"model": model.state_dict()}, args.save_weights)
    model.eval()
    rpn = model.proposal_generator
    # The training-time ROI pool (the model is in eval mode: its test top-k take the values).
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
        "weights": weights,
        "dataset": args.dataset[0],
        "images": len(dicts),
        "roi_settings": args.roi_settings,
        "size": args.size,
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
        f"{args.batch_size_per_image} ROIs, {args.positive_fraction:.0%} positives, "
        f"RPN top-k {args.pre_nms_topk}/{args.post_nms_topk}\n"
        f"model: {os.path.relpath(args.config_file, REPO)}\n{trained}"
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
