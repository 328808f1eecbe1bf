#!/usr/bin/env python
"""
Draw what ATSS does on one image of a dataset: for each ground-truth box, its candidate anchors
(the k nearest per pyramid level), the IoU threshold ``mean + std`` of their IoUs, and the
anchors that became positive. Writes a PNG.

    python tools/visualize_atss.py --config-file configs/Synthetic/atss_tiny_FPN.yaml \\
        --dataset synthetic_val --index 3 --output docs/images/atss_assignment_synthetic.png
    python tools/visualize_atss.py --config-file configs/COCO-Detection/atss_R_50_FPN_1x.yaml \\
        --coco-dataset coco_tiny_val ../shared/data/coco_tiny/annotations/instances_val2017.json \\
        ../shared/data/coco_tiny/val2017 --dataset coco_tiny_val --index 0 --output x.png
    python tools/visualize_atss.py --config-file configs/BCCD/atss_effnetlite0_FPN.yaml \\
        --voc-dataset bccd_val ../shared/data/bccd val --dataset bccd_val --index 0 \\
        --output x.png
    python tools/visualize_atss.py --config-file configs/BCCD/fcos_atss_effnetlite0_FPN.yaml \\
        --dataset bccd_val --index 0 --output docs/images/fcos_atss_assignment_bccd.png

``--coco-dataset NAME JSON IMAGE_ROOT`` and ``--voc-dataset NAME DIR SPLIT`` (Pascal VOC
layout, as train_net.py's) register a dataset for ``--dataset`` (repeatable); so do a yacs
config's ``DATASETS.COCO_FORMAT`` / ``VOC_FORMAT``. ``--index`` counts from 0 in the dataset's
order (a VOC split file's).

The image is resized as at test time (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``), anchors
come from the config's model (yacs ``.yaml`` or LazyConfig ``.py``, weights are not needed:
assignment does not depend on them) and the assignment from its ``anchor_matcher``; for
``FCOSATSS`` the anchors are its squares of ``MODEL.FCOS.ATSS_ANCHOR_SCALE`` x stride centred on
FCOS's points, one per location.

Top: the image with every GT (white) and its positive anchors (its colour). Then one row per
GT (``--max-gt`` of them, from the largest to the smallest): left, a crop with the candidate
anchors' centres (marker per level, filled = positive, the positives' boxes drawn; dotted gray:
positive for this GT but given to another GT with a higher IoU); right, each candidate's IoU
by level, with the GT's threshold (solid) and the mean IoU (dashed).
"""

import argparse
import os

import matplotlib
import matplotlib.patches as patches
import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

import d2_sampling  # noqa: F401  (registers the models)
from d2_sampling.data import prepare_datasets
from d2_sampling.engine.setup import (
    add_dataset_arguments,
    is_lazy_config,
    load_lazy_config,
    load_yacs_config,
    register_cli_datasets,
    register_cli_voc_datasets,
)

LEVEL_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
# tab10 without its gray, which marks positives lost to another GT.
COLORS = [c for i, c in enumerate(matplotlib.colormaps["tab10"].colors) if i != 7]


def build(config_file, opts):
    """(model, min_size_test, max_size_test) from a yacs or LazyConfig file."""
    if is_lazy_config(config_file):
        cfg = load_lazy_config(config_file, opts)
        model = instantiate(cfg.model)
        aug = cfg.dataloader.test.mapper.augmentations[0]
        return model, aug.short_edge_length, aug.max_size
    cfg = load_yacs_config(config_file, list(opts) + ["MODEL.DEVICE", "cpu"])
    return build_model(cfg), cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST


def assignment_anchors(model):
    """The anchor generator ATSS assigns with: the model's own, or FCOSATSS's squares of
    ``MODEL.FCOS.ATSS_ANCHOR_SCALE`` x stride around FCOS's points."""
    return getattr(model, "atss_anchor_generator", None) or model.anchor_generator


@torch.no_grad()
def compute(model, image, gt_boxes):
    """Anchors for the image, the matcher's candidates and its final assignment."""
    model.eval()
    h, w = image.shape[:2]
    div = max(model.backbone.size_divisibility, 1)
    ph, pw = (h + div - 1) // div * div, (w + div - 1) // div * div
    features = model.backbone(torch.zeros(1, 3, ph, pw))
    generator = assignment_anchors(model)
    anchors = generator([features[f] for f in model.head_in_features])
    gt = Boxes(torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4))
    per_location = generator.num_cell_anchors
    candidates = model.anchor_matcher.select_candidates(gt, anchors, per_location)
    matches, labels = model.anchor_matcher.assign(candidates)
    return anchors, gt, candidates, matches, labels


def draw(image, anchors, gt, cands, matches, labels, class_names, gt_classes, max_gt, title):
    flat = Boxes.cat(anchors).tensor.numpy()
    centers = (flat[:, :2] + flat[:, 2:]) / 2
    level_of = np.concatenate([np.full(len(a), i) for i, a in enumerate(anchors)])
    gtb = gt.tensor.numpy()
    areas = (gtb[:, 2] - gtb[:, 0]) * (gtb[:, 3] - gtb[:, 1])
    by_size = np.argsort(-areas)
    # Spread the rows over the size range: the largest, the smallest, and between.
    picks = np.unique(np.round(np.linspace(0, len(by_size) - 1, min(max_gt, len(by_size)))))
    shown = [int(by_size[int(i)]) for i in picks]
    n = len(shown)
    fig = Figure(figsize=(11, 4.2 + 3.3 * n))
    grid = fig.add_gridspec(1 + n, 2, height_ratios=[1.35] + [1] * n, width_ratios=[1, 1.25])

    ax = fig.add_subplot(grid[0, :])
    ax.imshow(image)
    ax.set_title(title, fontsize=10)
    lab = labels.numpy().astype(bool)
    m = matches.numpy()
    for g in range(len(gtb)):
        color = COLORS[g % len(COLORS)]
        x0, y0, x1, y1 = gtb[g]
        ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=2))
        for a in np.nonzero(lab & (m == g))[0]:
            ax0, ay0, ax1, ay1 = flat[a]
            ax.add_patch(
                patches.Rectangle(
                    (ax0, ay0), ax1 - ax0, ay1 - ay0, fill=False, ec=color, lw=0.8, alpha=0.8
                )
            )
            ax.plot(*centers[a], ".", color=color, ms=5)
        ax.text(
            x0, y0 - 2, f"GT{g}", color="white", fontsize=7, bbox=dict(fc=color, ec="none", pad=0.5)
        )
    ax.set_axis_off()

    for row, g in enumerate(shown, start=1):
        color = COLORS[g % len(COLORS)]
        idx = cands.indices[g].numpy()
        ious = cands.ious[g].numpy()
        pos = cands.is_positive[g].numpy()
        won = lab[idx] & (m[idx] == g)
        thr = float(cands.thresholds[g])
        x0, y0, x1, y1 = gtb[g]

        # Left: the crop with candidate centres and the positives' boxes.
        axc = fig.add_subplot(grid[row, 0])
        axc.imshow(image)
        pad = max(x1 - x0, y1 - y0) * 0.9 + 16
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        axc.set_xlim(cx - pad, cx + pad)
        axc.set_ylim(cy + pad, cy - pad)
        axc.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=2))
        for j, a in enumerate(idx):
            lvl = level_of[a]
            mk = LEVEL_MARKERS[lvl % len(LEVEL_MARKERS)]
            if pos[j]:
                ax0, ay0, ax1, ay1 = flat[a]
                axc.add_patch(
                    patches.Rectangle(
                        (ax0, ay0),
                        ax1 - ax0,
                        ay1 - ay0,
                        fill=False,
                        ec=color if won[j] else "dimgray",
                        lw=1.2,
                        ls="-" if won[j] else ":",
                    )
                )
            axc.plot(*centers[a], mk, ms=6, mec="black", mew=0.6, mfc=color if pos[j] else "none")
        name = class_names[gt_classes[g]] if class_names else str(gt_classes[g])
        axc.set_title(
            f"GT{g} ({name}, {x1 - x0:.0f}x{y1 - y0:.0f}): "
            f"{len(idx)} candidates, {int(won.sum())} positive",
            fontsize=9,
        )
        axc.set_axis_off()

        # Right: candidate IoUs per level with the adaptive threshold.
        axi = fig.add_subplot(grid[row, 1])
        rng = np.random.default_rng(0)
        lv = level_of[idx]
        jitter = rng.uniform(-0.18, 0.18, size=len(idx))
        for j in range(len(idx)):
            axi.plot(
                lv[j] + jitter[j],
                ious[j],
                LEVEL_MARKERS[lv[j] % len(LEVEL_MARKERS)],
                ms=6,
                mec="black",
                mew=0.6,
                mfc=color if pos[j] else "none",
            )
        axi.axhline(thr, color=color, lw=1.5, label=f"threshold mean+std = {thr:.3f}")
        axi.axhline(
            float(np.mean(ious.astype(np.float64))),
            color=color,
            lw=1,
            ls="--",
            label=f"mean = {np.mean(ious.astype(np.float64)):.3f}",
        )
        axi.set_xticks(range(len(anchors)))
        axi.set_xticklabels([f"P{i + 3}" for i in range(len(anchors))])
        axi.set_ylabel("IoU with GT")
        axi.set_ylim(-0.02, max(0.1, float(ious.max()) * 1.15))
        axi.legend(fontsize=8, loc="upper right")
        axi.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", required=True, help="a registered dataset name")
    parser.add_argument("--index", type=int, default=0, help="which image of the dataset")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--max-gt", type=int, default=3, help="GT boxes given their own row")
    add_dataset_arguments(parser, coco=True, voc=True)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = parser.parse_args(argv)
    register_cli_datasets(args.coco_dataset)
    register_cli_voc_datasets(args.voc_dataset)

    model, min_size, max_size = build(args.config_file, args.opts)
    prepare_datasets([args.dataset])
    record = DatasetCatalog.get(args.dataset)[args.index]
    image = utils.read_image(record["file_name"], format="RGB")
    annos = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
    if isinstance(min_size, (list, tuple)):
        min_size = min_size[-1]
    aug = T.AugmentationList([T.ResizeShortestEdge(min_size, max_size)])
    inp = T.AugInput(image)
    tfm = aug(inp)
    image = inp.image
    instances = utils.annotations_to_instances(
        [utils.transform_instance_annotations(a, tfm, image.shape[:2]) for a in annos],
        image.shape[:2],
    )
    anchors, gt, cands, matches, labels = compute(model, image, instances.gt_boxes.tensor)
    meta = MetadataCatalog.get(args.dataset)
    per_location = sorted(set(assignment_anchors(model).num_cell_anchors))
    title = (
        f"{type(model).__name__}: {args.dataset}[{args.index}], {image.shape[1]}x"
        f"{image.shape[0]}, k={model.anchor_matcher.topk} x "
        f"{'/'.join(map(str, per_location))} anchor(s)/location, "
        f"{int(labels.sum())} positives for {len(gt)} GT"
    )
    fig = draw(
        image,
        anchors,
        gt,
        cands,
        matches,
        labels,
        meta.get("thing_classes"),
        instances.gt_classes.tolist(),
        args.max_gt,
        title,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=90)
    print(f"wrote {args.output}: {len(gt)} GT, {int(labels.sum())} positive anchors")


if __name__ == "__main__":
    main()
