#!/usr/bin/env python
"""
Draw what Libra R-CNN's balanced feature pyramid does to a model's pyramid on one image: each
level before (the FPN's output), the balanced semantic feature (the levels resized to the
refine level and averaged; then refined), and each level after (the FPN's plus the refined
feature resized back). Each map is the mean absolute activation over channels; every map of a
row shares one colour scale, so rows compare levels. Writes a PNG.

    python tools/visualize_bfp.py \\
        --config-file configs/BCCD/libra_faster_rcnn_effnetlite0_FPN.yaml \\
        --voc-dataset bccd_val ../shared/data/bccd val --dataset bccd_val --index 0 \\
        --weights output/bccd_libra/model_final.pth --output docs/images/bfp_bccd.png

The model's backbone must be ``build_bfp_backbone`` (``BalancedFeaturePyramid``). Without
``--weights`` the model has its initial weights (for the BCCD configs: the ImageNet backbone,
a freshly initialised FPN and refinement, whose non-local block starts as the identity), so the
picture shows the operation, not what training made of it (``--seed``: of those initial
weights). ``--coco-dataset`` /
``--voc-dataset`` register a dataset as for train_net.py; the image is resized as at test time.
"""

import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from matplotlib.figure import Figure
from visualize_atss import build  # noqa: E402  (tools/ is the script's folder)

import d2_sampling  # noqa: F401  (registers the models)
from d2_sampling.data import prepare_datasets
from d2_sampling.engine.setup import (
    add_dataset_arguments,
    register_cli_datasets,
    register_cli_voc_datasets,
)
from d2_sampling.modeling import BalancedFeaturePyramid


@torch.no_grad()
def balance_steps(bfp: BalancedFeaturePyramid, x: torch.Tensor):
    """
    The pyramid before and after, and the balanced semantic feature before and after its
    refinement (``BalancedFeaturePyramid.balance``), for the first image of ``x``.

    Returns:
        dict: ``before`` / ``after`` (name -> (C, H, W)), ``integrated`` / ``refined``
        ((C, H, W) at the refine level).
    """
    outs = bfp.bottom(x)
    after, integrated, refined = bfp.balance(outs)
    return {
        "before": {f: outs[f][0] for f in bfp.in_features},
        "integrated": integrated[0],
        "refined": refined[0],
        "after": {f: after[f][0] for f in bfp.in_features},
    }


def _energy(t: torch.Tensor) -> np.ndarray:
    return t.abs().mean(0).numpy()


def draw(image, steps, refine_name, title):
    names = list(steps["before"])
    cols = len(names) + 1
    fig = Figure(figsize=(2.6 * cols, 8.2))
    fig.suptitle(title, fontsize=9)
    rows = [
        ("FPN output (before)", [_energy(steps["before"][n]) for n in names]),
        ("after BFP", [_energy(steps["after"][n]) for n in names]),
    ]
    ax = fig.add_subplot(3, cols, 1)
    ax.imshow(image)
    ax.set_title("image", fontsize=8)
    ax.axis("off")
    mid = [_energy(steps["integrated"]), _energy(steps["refined"])]
    vmax = max(m.max() for m in mid)
    for j, (m, label) in enumerate(zip(mid, ["integrated (mean of levels)", "refined"])):
        ax = fig.add_subplot(3, cols, 2 + j)
        ax.imshow(m, cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(f"{label}, at {refine_name}", fontsize=8)
        ax.axis("off")
    for r, (label, maps) in enumerate(rows):
        vmax = max(m.max() for m in maps)
        for j, (name, m) in enumerate(zip(names, maps)):
            ax = fig.add_subplot(3, cols, (r + 1) * cols + 1 + j)
            ax.imshow(m, cmap="viridis", vmin=0, vmax=vmax)
            ax.set_title(f"{name} {label}, {m.shape[1]}x{m.shape[0]}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", required=True, help="a registered dataset name")
    parser.add_argument("--index", type=int, default=0, help="which image of the dataset")
    parser.add_argument("--weights", help="a checkpoint of the model (default: its init)")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    add_dataset_arguments(parser, coco=True, voc=True)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = parser.parse_args(argv)
    register_cli_datasets(args.coco_dataset)
    register_cli_voc_datasets(args.voc_dataset)

    torch.manual_seed(args.seed)  # the initial weights of what --weights does not load
    model, min_size, max_size = build(args.config_file, args.opts)
    if not isinstance(model.backbone, BalancedFeaturePyramid):
        raise SystemExit(
            f"visualize_bfp.py: {args.config_file}: the backbone is "
            f"{type(model.backbone).__name__}, not a BalancedFeaturePyramid "
            '(MODEL.BACKBONE.NAME: "build_bfp_backbone")'
        )
    if args.weights:
        if not os.path.isfile(args.weights):
            raise SystemExit(f"visualize_bfp.py: --weights {args.weights}: no such file")
        DetectionCheckpointer(model).load(args.weights)
    model.eval()
    prepare_datasets([args.dataset])
    record = DatasetCatalog.get(args.dataset)[args.index]
    image = utils.read_image(record["file_name"], format="RGB")
    if isinstance(min_size, (list, tuple)):
        min_size = min_size[-1]
    inp = T.AugInput(image)
    T.AugmentationList([T.ResizeShortestEdge(min_size, max_size)])(inp)
    image = inp.image
    x = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))
    x = (x - model.pixel_mean.cpu()) / model.pixel_std.cpu()
    div = max(model.backbone.size_divisibility, 1)
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (-w) % div, 0, (-h) % div))[None]
    steps = balance_steps(model.backbone, x)
    bfp = model.backbone
    refine_name = bfp.in_features[bfp.refine_level]
    title = (
        f"BalancedFeaturePyramid ({bfp.refine_type}) of {os.path.basename(args.config_file)}, "
        f"{args.dataset}[{args.index}] at {w}x{h}, "
        f"{'weights ' + os.path.basename(args.weights) if args.weights else 'initial weights'}"
    )
    fig = draw(image, steps, refine_name, title)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=90)
    change = {
        n: float((steps["after"][n] - steps["before"][n]).abs().mean()) for n in steps["before"]
    }
    print(
        f"wrote {args.output}: mean |after - before| per level "
        + ", ".join(f"{n} {v:.4f}" for n, v in change.items())
    )


if __name__ == "__main__":
    main()
