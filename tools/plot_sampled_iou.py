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
reference. Without ``--weights``, the model is first trained from scratch for
``--train-iters`` iterations on ``--train-dataset`` (no pretrained weights are reachable here,
so on COCO this is a briefly trained model: its hard negatives are those of an early model).

    python tools/plot_sampled_iou.py --out docs/images/iou_balanced_sampled_iou.png \\
        [--config-file configs/Synthetic/faster_rcnn_tiny_FPN_demo.yaml] [--weights W.pth] \\
        [--train-iters 200] [--max-images 80] [--json out.json] [--seed 0]

Defaults use the COCO slice at ../shared/data/coco_tiny (train2017 to train, val2017 to plot).
"""

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import d2_sampling  # noqa: E402,F401  (registers models and datasets)
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_train_loader  # noqa
from detectron2.data import transforms as T  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.modeling.proposal_generator.proposal_utils import (  # noqa: E402
    add_ground_truth_to_proposals,
)
from detectron2.modeling.sampling import subsample_labels  # noqa: E402
from detectron2.structures import pairwise_iou  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from d2_sampling import add_d2_sampling_config  # noqa: E402
from d2_sampling.data import register_coco_format  # noqa: E402
from d2_sampling.modeling import iou_balanced_subsample  # noqa: E402

COCO_TINY = REPO.parent / "shared" / "data" / "coco_tiny"
PICKERS = ("random", "hard (by loss)", "IoU-balanced")


def build_cfg(args):
    cfg = get_cfg()
    add_d2_sampling_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.DEVICE = "cpu" if not torch.cuda.is_available() else cfg.MODEL.DEVICE
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = args.num_classes
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = args.batch_size_per_image
    cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION = args.positive_fraction
    cfg.DATASETS.TRAIN = (args.train_dataset[0],)
    cfg.DATASETS.TEST = ()
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = args.train_batch
    cfg.freeze()
    return cfg


def train_briefly(cfg, model, iters, log):
    """Plain SGD from scratch with a linear warm-up; no checkpoint, no evaluation."""
    loader = build_detection_train_loader(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=cfg.SOLVER.BASE_LR, momentum=0.9, weight_decay=1e-4)
    warmup = max(1, min(100, iters // 4))
    model.train()
    t0 = time.perf_counter()
    with EventStorage():
        for it, batch in zip(range(iters), loader):
            for g in optim.param_groups:
                g["lr"] = cfg.SOLVER.BASE_LR * min(1.0, (it + 1) / warmup)
            losses = model(batch)
            loss = sum(losses.values())
            optim.zero_grad()
            loss.backward()
            optim.step()
            if it % 50 == 0 or it == iters - 1:
                log(
                    f"iter {it}: loss {loss.item():.3f} "
                    + " ".join(f"{k} {v.item():.3f}" for k, v in losses.items())
                    + f" ({time.perf_counter() - t0:.0f} s)"
                )


@torch.no_grad()
def sample_image(model, d, args):
    """The three pickers' negatives for one mapped image: dict picker -> IoUs (numpy)."""
    heads = model.roi_heads
    images = model.preprocess_image([d])
    features = model.backbone(images.tensor)
    targets = [d["instances"].to(images.tensor.device)]
    proposals, _ = model.proposal_generator(images, features)
    proposals = add_ground_truth_to_proposals(targets, proposals)
    props, tgt = proposals[0], targets[0]
    bg = heads.num_classes
    if len(tgt) > 0:
        quality = pairwise_iou(tgt.gt_boxes, props.proposal_boxes)
        matched, match_labels = heads.proposal_matcher(quality)
        ious = quality.gather(0, matched[None]).squeeze(0)
        labels = tgt.gt_classes[matched]
        labels[match_labels == 0] = bg
        labels[match_labels == -1] = -1
    else:
        ious = torch.zeros(len(props))
        matched = torch.zeros(len(props), dtype=torch.int64)
        labels = torch.full((len(props),), bg, dtype=torch.int64)

    num, frac = heads.batch_size_per_image, heads.positive_fraction
    _, rand_neg = subsample_labels(labels, num, frac, bg)
    _, bal_neg = iou_balanced_subsample(
        labels, ious, num, frac, bg, num_bins=args.num_bins, gt_indices=matched
    )
    # Hard negatives: classification loss of every negative under the model's box head.
    negatives = torch.nonzero(labels == bg).view(-1)
    feats = [features[f] for f in heads.box_in_features]
    box_feats = heads.box_head(heads.box_pooler(feats, [props.proposal_boxes[negatives]]))
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
    parser.add_argument("--out", default=str(REPO / "docs/images/iou_balanced_sampled_iou.png"))
    parser.add_argument("--json", help="also write the histograms here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="yacs KEY VALUE overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    def log(msg):
        print(f"[plot_sampled_iou] {msg}", flush=True)

    register_coco_format(*args.train_dataset)
    register_coco_format(*args.dataset)
    cfg = build_cfg(args)
    model = build_model(cfg)
    if args.weights:
        DetectionCheckpointer(model).load(args.weights)
        trained = f"weights {args.weights}"
    else:
        log(f"training from scratch for {args.train_iters} iterations on {args.train_dataset[0]}")
        train_briefly(cfg, model, args.train_iters, log)
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
