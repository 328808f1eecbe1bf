#!/usr/bin/env python
"""
OHEM cost, measured side by side in one run.

1. Training iteration (forward + backward + SGD step) of the TinyNet-FPN Faster R-CNN of
   configs/Synthetic/, with StandardROIHeads and with OHEMROIHeads, same weights, same batch
   (the same mapped images every iteration), same input size. Variants are interleaved
   iteration by iteration so that load changes on a shared machine hit all of them alike.
   Reports the median per variant, its ratio to StandardROIHeads, and the median time of each
   OHEM step inside the iteration (pool labelling, read-only pass, selection), which is what
   the extra time is made of.
2. Selection over 2,000 RoIs with NMS (select_hard_examples) against the read-only box-head
   forward over the same RoIs that it follows (pooler + box head + predictor + per-RoI losses),
   for the tiny head and for a Detectron2 R50-FPN-sized head (256 channels, 2 x 1024 FC).

    python benchmarks/bench_ohem.py [--repeats 20] [--threads 1] [--json out.json] [--quick]
"""

import argparse
import json
import os
import platform
import statistics
import time
from collections import defaultdict

import torch
from _common import fixed_batch, load_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import d2_sampling  # noqa: F401  (registers models and datasets)
from d2_sampling.modeling import fast_rcnn_per_roi_losses, select_hard_examples

VARIANTS = [
    # name, config, extra options, index of the StandardROIHeads row it is compared with
    ("Standard, 128 RoIs/img, 25% fg", "Synthetic/faster_rcnn_tiny_FPN_demo.yaml", [], 0),
    ("OHEM paper: 64, cls+box, NMS 0.7", "Synthetic/faster_rcnn_tiny_FPN_ohem.yaml", [], 0),
    (
        "OHEM paper settings, B=128",
        "Synthetic/faster_rcnn_tiny_FPN_ohem.yaml",
        ["MODEL.OHEM.BATCH_SIZE_PER_IMAGE", 128],
        0,
    ),
    (
        "Standard, 512 RoIs/img, 25% fg",
        "Synthetic/faster_rcnn_tiny_FPN_demo.yaml",
        ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 512],
        3,
    ),
    (
        "OHEM MMDetection settings, B=512 (~the whole pool here)",
        "Synthetic/faster_rcnn_tiny_FPN_ohem_mmdet.yaml",
        ["MODEL.OHEM.BATCH_SIZE_PER_IMAGE", 512],
        3,
    ),
    # The synthetic config as shipped: MMDetection's recipe at the baseline sampler's size.
    ("OHEM MMDetection: 128, cls, 25% fg", "Synthetic/faster_rcnn_tiny_FPN_ohem_mmdet.yaml", [], 0),
]
# --r50: Detectron2's R50-FPN COCO configs on the same batch, slow on a CPU (seconds per
# iteration). Random weights (nothing can be downloaded), and BatchNorm instead of FrozenBN:
# FrozenBN's identity statistics on random weights blow the activations up, the RPN's boxes
# degenerate and the RoI pools shrink to ~20 RoIs, which would time nothing; with BN they are
# ~1000 per image, as with trained weights.
_R50 = ["MODEL.RESNETS.NORM", "BN"]
VARIANTS_R50 = [
    ("R50 Standard, 512 RoIs/img, 25% fg", "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml", _R50, 0),
    (
        "R50 OHEM paper: 64, cls+box, NMS 0.7",
        "COCO-Detection/faster_rcnn_R_50_FPN_ohem_1x.yaml",
        _R50,
        0,
    ),
    (
        "R50 OHEM MMDetection: 512, cls, 25% fg",
        "COCO-Detection/faster_rcnn_R_50_FPN_ohem_mmdet_1x.yaml",
        _R50,
        0,
    ),
]
OHEM_STEPS = ("label_pool", "score_pool", "select")


def timed(fn, times, name):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times[name].append(time.perf_counter() - t0)
        return out

    return wrapper


def bench_iterations(args, variants=VARIANTS, repeats=None):
    repeats = args.repeats if repeats is None else repeats
    models, optims, step_times = [], [], []
    reference = None
    for _, config, opts, _ in variants:
        cfg = load_cfg(config, opts)
        torch.manual_seed(0)
        model = build_model(cfg).train()
        if reference is None:
            reference = model.state_dict()
        model.load_state_dict(reference)  # same weights everywhere; OHEM adds no parameter
        times = defaultdict(list)
        heads = model.roi_heads
        if hasattr(heads, "score_pool"):
            for step in OHEM_STEPS:
                setattr(heads, step, timed(getattr(heads, step), times, step))
        else:
            heads.label_and_sample_proposals = timed(
                heads.label_and_sample_proposals, times, "label_and_sample"
            )
        models.append(model)
        # lr 0: the weights, hence the proposals and the work, stay the same every iteration.
        optims.append(torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9))
        step_times.append(times)
    batch = fixed_batch(load_cfg(VARIANTS[0][1], []), args.images, args.size)

    iter_times = [[] for _ in variants]
    with EventStorage():
        for it in range(args.warmup + repeats):
            for k, (model, optim) in enumerate(zip(models, optims)):
                t0 = time.perf_counter()
                losses = model(batch)
                optim.zero_grad()
                sum(losses.values()).backward()
                optim.step()
                dt = time.perf_counter() - t0
                if it >= args.warmup:
                    iter_times[k].append(dt)
                else:
                    for v in step_times[k].values():
                        v.clear()

    medians = [statistics.median(ts) for ts in iter_times]
    rows = []
    for (name, _, _, base), ts, steps, med in zip(variants, iter_times, step_times, medians):
        rows.append(
            {
                "variant": name,
                "median_s": med,
                "baseline": variants[base][0],
                "ratio": med / medians[base],
                "steps_median_s": {k: statistics.median(v) for k, v in steps.items() if v},
                "iterations": len(ts),
            }
        )
    return rows


def _head_pieces(channels, fc_dim, num_classes):
    pooler = ROIPooler(7, (1 / 4, 1 / 8, 1 / 16, 1 / 32), 0, "ROIAlignV2")
    head = FastRCNNConvFCHead(
        ShapeSpec(channels=channels, height=7, width=7), conv_dims=[], fc_dims=[fc_dim, fc_dim]
    )
    predictor = FastRCNNOutputLayers(
        head.output_shape,
        box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
        num_classes=num_classes,
    )
    return pooler, head, predictor


def bench_selection(args):
    """select_hard_examples over N RoIs vs the read-only forward over the same N RoIs."""
    gen = torch.Generator().manual_seed(0)
    h, w = 320, 448
    n = args.num_rois
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w - 16.0, h - 16.0])
    wh = 8 + torch.rand(n, 2, generator=gen) * 120
    boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([w, h]))], dim=1)
    gt_idx = torch.randint(0, 6, (n,), generator=gen)
    rois = Instances((h, w))
    rois.proposal_boxes = Boxes(boxes)
    rois.gt_classes = gt_idx  # 0..4 foreground, 5 background
    rois.gt_boxes = Boxes(boxes + 3.0)

    results = []
    for label, channels, fc_dim in [
        ("tiny head (64 ch, 2x256 FC)", 64, 256),
        ("R50-FPN head (256 ch, 2x1024 FC)", 256, 1024),
    ]:
        torch.manual_seed(0)
        pooler, head, predictor = _head_pieces(channels, fc_dim, 5)
        feats = [torch.randn(1, channels, h // s, w // s, generator=gen) for s in (4, 8, 16, 32)]

        def forward():
            with torch.no_grad():
                pred = predictor(head(pooler(feats, [rois.proposal_boxes])))
                cls, box = fast_rcnn_per_roi_losses(predictor, pred, [rois])
            return cls + box

        losses = forward()
        fg = rois.gt_classes < 5
        t_fwd, t_sel, t_sel_q = [], [], []
        for it in range(args.warmup + args.repeats):
            t0 = time.perf_counter()
            forward()
            t1 = time.perf_counter()
            select_hard_examples(losses, 64, boxes=boxes, nms_thresh=0.7)
            t2 = time.perf_counter()
            select_hard_examples(losses, 512, is_foreground=fg, positive_fraction=0.25)
            t3 = time.perf_counter()
            if it >= args.warmup:
                t_fwd.append(t1 - t0)
                t_sel.append(t2 - t1)
                t_sel_q.append(t3 - t2)
        fwd = statistics.median(t_fwd)
        sel = statistics.median(t_sel)
        selq = statistics.median(t_sel_q)
        results.append(
            {
                "head": label,
                "num_rois": n,
                "readonly_forward_median_s": fwd,
                "select_nms_median_s": sel,
                "select_quota_median_s": selq,
                "select_nms_over_forward": sel / fwd,
            }
        )
    return results


def print_iterations(title, rows):
    print("\n" + title)
    print(
        f"| {'variant':<38} | {'median (ms)':>11} | {'ratio':>5} | "
        f"{'label pool':>10} | {'read-only':>9} | {'select':>6} |"
    )
    print(f"|{'-' * 40}|{'-' * 12}:|{'-' * 6}:|{'-' * 11}:|{'-' * 10}:|{'-' * 7}:|")
    for r in rows:
        s = r["steps_median_s"]
        cells = [f"{1000 * s[k]:.1f}" if k in s else "-" for k in OHEM_STEPS]
        print(
            f"| {r['variant']:<38} | {1000 * r['median_s']:11.1f} | {r['ratio']:5.2f} | "
            f"{cells[0]:>10} | {cells[1]:>9} | {cells[2]:>6} |"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--images", type=int, default=2, help="images per training step")
    parser.add_argument("--size", type=int, default=320, help="shorter image side")
    parser.add_argument("--num-rois", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="one tiny iteration of everything")
    parser.add_argument("--r50", action="store_true", help="also time R50-FPN (slow on CPU)")
    parser.add_argument("--r50-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.images, args.size, args.num_rois = 1, 0, 1, 224, 200
        args.r50_repeats = 1
    torch.set_num_threads(args.threads)

    iters = bench_iterations(args)
    r50 = bench_iterations(args, VARIANTS_R50, args.r50_repeats) if args.r50 else []
    sel = bench_selection(args)

    where = f"{args.threads} thread(s), {platform.processor() or platform.machine()}"
    print_iterations(
        f"Training iteration, TinyNet-FPN, {args.images} images at {args.size} px, "
        f"{args.repeats} iterations each (median), {where}:",
        iters,
    )
    print(
        "(ratio: against the Standard row with the same number of RoIs per image: 512 for the "
        "two B=512 rows, 128 for the others; step columns: median ms of each OHEM step)"
    )
    if r50:
        print_iterations(
            f"Training iteration, R50-FPN (random init), {args.images} images at {args.size} px, "
            f"{args.r50_repeats} iterations each (median), {where}:",
            r50,
        )
    print(f"\nSelection over {args.num_rois} RoIs vs the read-only forward it follows (median):")
    print(
        f"| {'box head':<34} | {'read-only fwd (ms)':>18} | {'select, NMS (ms)':>16} | "
        f"{'select, quota (ms)':>18} | {'NMS select / fwd':>16} |"
    )
    print(f"|{'-' * 36}|{'-' * 19}:|{'-' * 17}:|{'-' * 19}:|{'-' * 17}:|")
    for r in sel:
        print(
            f"| {r['head']:<34} | {1000 * r['readonly_forward_median_s']:18.2f} | "
            f"{1000 * r['select_nms_median_s']:16.2f} | "
            f"{1000 * r['select_quota_median_s']:18.2f} | "
            f"{r['select_nms_over_forward']:16.3f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "iterations": iters,
                    "r50_iterations": r50,
                    "selection": sel,
                    "torch": torch.__version__,
                    "cpu_count": os.cpu_count(),
                },
                f,
                indent=2,
            )
    return iters, sel


if __name__ == "__main__":
    main()
