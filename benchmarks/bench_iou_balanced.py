#!/usr/bin/env python
"""
IoU-balanced sampling cost, measured side by side in one run.

1. Sampling one image's proposals (2,000 and 8,000) on CPU: 512 ROIs, 25% positives, from
   labels / IoUs / matched GTs produced by Detectron2's matcher on synthetic boxes (7 GTs on an
   800 x 1333 image, a third of the proposals jittered around GTs, the rest anywhere). Compared,
   interleaved call by call:
   - Detectron2's ``subsample_labels`` (uniform; the baseline of the ratios);
   - ``iou_balanced_subsample`` with Libra R-CNN's settings (K = 3, no floor set,
     instance-balanced positives), with uniform positives, and with a floor set;
   - ``mmdet_libra_sample`` (``d2_sampling/references/iou_balanced.py``): MMDetection's
     ``InstanceBalancedPosSampler`` + ``IoUBalancedNegSampler`` algorithm (mmdet 3.x)
     re-implemented step by step (numpy and Python sets on the host, a loop over bins and over
     GTs), without MMDetection installed.
2. Training iteration (forward + backward + SGD step) of the TinyNet-FPN Faster R-CNN of
   configs/Synthetic/ with StandardROIHeads and with IoUBalancedROIHeads, same weights, same
   batch, same input size, at 128 and 512 ROIs per image; variants interleaved iteration by
   iteration so that load changes on a shared machine hit all of them alike. Also the median
   time of ``label_and_sample_proposals`` inside the iteration.

    python benchmarks/bench_iou_balanced.py [--repeats 30] [--calls 400] [--json out.json]
                                            [--quick]
"""

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections import defaultdict

import torch
from _common import fixed_batch, load_cfg
from detectron2.modeling import build_model
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import d2_sampling  # noqa: F401  (registers models and datasets)
from d2_sampling.modeling import iou_balanced_subsample
from d2_sampling.modeling.roi_heads import label_proposals
from d2_sampling.references.iou_balanced import mmdet_libra_sample

NUM_CLASSES = 80


# --------------------------------------------------------------------------------------------
# 1. Sampling one image's proposals
# --------------------------------------------------------------------------------------------
POOLS = {
    # a third of the proposals around GTs: every IoU bin holds more than its share
    "trained RPN": 1 / 3,
    # 3% around GTs: the upper bins run short and the fill step runs
    "early RPN": 0.03,
}


def make_image(num_proposals, near_fraction=1 / 3, seed=0):
    """labels (R,), max IoU (R,), matched GT (R,), as IoUBalancedROIHeads computes them."""
    gen = torch.Generator().manual_seed(seed)
    h, w = 800.0, 1333.0
    xy = torch.rand(7, 2, generator=gen) * torch.tensor([w - 300, h - 300])
    gt = torch.cat([xy, xy + 40 + torch.rand(7, 2, generator=gen) * 250], dim=1)
    near = int(num_proposals * near_fraction)
    src = gt[torch.randint(0, 7, (near,), generator=gen)]
    size = (src[:, 2:] - src[:, :2]).repeat(1, 2)
    jittered = src + (torch.rand(near, 4, generator=gen) - 0.5) * size * 0.8
    xy = torch.rand(num_proposals - near, 2, generator=gen) * torch.tensor([w - 20, h - 20])
    anywhere = torch.cat([xy, xy + 10 + torch.rand(xy.shape, generator=gen) * 300], dim=1)
    boxes = torch.cat([jittered, anywhere])
    boxes = torch.stack(
        [
            torch.minimum(boxes[:, 0], boxes[:, 2]),
            torch.minimum(boxes[:, 1], boxes[:, 3]),
            torch.maximum(boxes[:, 0], boxes[:, 2]) + 1,
            torch.maximum(boxes[:, 1], boxes[:, 3]) + 1,
        ],
        dim=1,
    )
    targets = Instances((int(h), int(w)), gt_boxes=Boxes(gt))
    targets.gt_classes = torch.randint(0, NUM_CLASSES, (7,), generator=gen)
    proposals = Instances((int(h), int(w)), proposal_boxes=Boxes(boxes))
    labels = label_proposals(proposals, targets, Matcher([0.5], [0, 1]), NUM_CLASSES)
    return labels.gt_classes, labels.ious, labels.matched_idxs


def bench_sampling(args):
    rows = []
    for n in args.sizes:
        for pool, near in POOLS.items():
            rows += _bench_pool(n, pool, near, args.calls)
    return rows


def _bench_pool(n, pool, near, calls):
    labels, ious, matched = make_image(n, near)
    gt_inds = torch.where(labels == NUM_CLASSES, torch.zeros_like(matched), matched + 1)
    fns = {
        "Detectron2 subsample_labels (uniform)": lambda: subsample_labels(
            labels, 512, 0.25, NUM_CLASSES
        ),
        "ours, Libra settings (K=3, instance-balanced)": lambda: iou_balanced_subsample(
            labels, ious, 512, 0.25, NUM_CLASSES, gt_indices=matched
        ),
        "ours, uniform positives": lambda: iou_balanced_subsample(
            labels, ious, 512, 0.25, NUM_CLASSES
        ),
        "ours, floor set (thr 0.05, fraction 0.5)": lambda: iou_balanced_subsample(
            labels,
            ious,
            512,
            0.25,
            NUM_CLASSES,
            floor_thr=0.05,
            floor_fraction=0.5,
            gt_indices=matched,
        ),
        "MMDetection algorithm (numpy), Libra settings": lambda: mmdet_libra_sample(gt_inds, ious),
    }
    times = defaultdict(list)
    for it in range(calls + 20):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if it >= 20:
                times[name].append(dt)
    base = statistics.median(times["Detectron2 subsample_labels (uniform)"])
    mmdet = statistics.median(times["MMDetection algorithm (numpy), Libra settings"])
    is_neg = labels == NUM_CLASSES
    num_pos = int((~is_neg & (labels != -1)).sum())
    neg_ious = ious[is_neg]
    edges = torch.linspace(0, float(neg_ious.max()), 4)
    per_bin = torch.histogram(neg_ious, edges).hist.long().tolist()
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append(
            {
                "proposals": n,
                "pool": pool,
                "positives": num_pos,
                "negatives_per_bin": per_bin,
                "sampler": name,
                "median_s": med,
                "vs_detectron2": med / base,
                "vs_mmdet": med / mmdet,
                "calls": len(ts),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# 2. Training iteration
# --------------------------------------------------------------------------------------------
VARIANTS = [
    # name, config, extra options, index of the StandardROIHeads row it is compared with
    ("Standard, 128 ROIs/img", "Synthetic/faster_rcnn_tiny_FPN_demo.yaml", [], 0),
    ("IoU-balanced, 128 ROIs/img", "Synthetic/faster_rcnn_tiny_FPN_iou_balanced.yaml", [], 0),
    (
        "Standard, 512 ROIs/img",
        "Synthetic/faster_rcnn_tiny_FPN_demo.yaml",
        ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 512],
        2,
    ),
    (
        "IoU-balanced, 512 ROIs/img",
        "Synthetic/faster_rcnn_tiny_FPN_iou_balanced.yaml",
        ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 512],
        2,
    ),
]


def bench_iterations(args):
    from d2_sampling.data import prepare_datasets

    prepare_datasets(["synthetic_mini_train"])
    models, optims, sample_times = [], [], []
    reference = None
    for _, config, opts, _ in VARIANTS:
        torch.manual_seed(0)
        model = build_model(load_cfg(config, opts)).train()
        if reference is None:
            reference = model.state_dict()
        model.load_state_dict(reference)  # same weights everywhere; no extra parameter
        times = []
        heads = model.roi_heads
        inner = heads.label_and_sample_proposals

        def timed(*a, _inner=inner, _times=times, **k):
            t0 = time.perf_counter()
            out = _inner(*a, **k)
            _times.append(time.perf_counter() - t0)
            return out

        heads.label_and_sample_proposals = timed
        models.append(model)
        # lr 0: the weights, hence the proposals and the work, stay the same every iteration.
        optims.append(torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9))
        sample_times.append(times)
    batch = fixed_batch(load_cfg(VARIANTS[0][1], []), args.images, args.size)

    iter_times = [[] for _ in VARIANTS]
    with EventStorage():
        for it in range(args.warmup + args.repeats):
            # A new random order of the variants every iteration: no variant always runs right
            # after the same other one (allocator and cache state, load drifts).
            for k in random.Random(it).sample(range(len(models)), len(models)):
                model, optim = models[k], optims[k]
                torch.manual_seed(it)
                t0 = time.perf_counter()
                losses = model(batch)
                optim.zero_grad()
                sum(losses.values()).backward()
                optim.step()
                dt = time.perf_counter() - t0
                if it >= args.warmup:
                    iter_times[k].append(dt)
                else:
                    sample_times[k].clear()

    medians = [statistics.median(ts) for ts in iter_times]
    rows = []
    for (name, _, _, base), ts, st, med in zip(VARIANTS, iter_times, sample_times, medians):
        # Each iteration against the baseline's run just before or after it: load changes on a
        # shared machine cancel out of these paired ratios better than out of the medians.
        paired = statistics.median(t / b for t, b in zip(ts, iter_times[base]))
        sample = statistics.median(st)
        base_sample = statistics.median(sample_times[base])
        rows.append(
            {
                "variant": name,
                "median_s": med,
                "baseline": VARIANTS[base][0],
                "ratio": med / medians[base],
                "paired_ratio": paired,
                "label_and_sample_median_s": sample,
                # What the sampler itself adds: the extra median time of label_and_sample
                # over the baseline's, on top of the baseline's iteration.
                "attributable_ratio": 1 + (sample - base_sample) / medians[base],
                "iterations": len(ts),
            }
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="timed calls per sampler")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--repeats", type=int, default=30, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--images", type=int, default=2, help="images per training step")
    parser.add_argument("--size", type=int, default=320, help="shorter image side")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="one tiny iteration of everything")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.sizes, args.repeats, args.warmup = 1, [600], 1, 0
        args.images, args.size = 1, 224
    torch.set_num_threads(args.threads)

    sampling = bench_sampling(args)
    iters = bench_iterations(args)

    cpu = platform.processor() or platform.machine()
    print(
        f"\nSampling 512 ROIs (25% positives) from one image's proposals, {args.calls} calls "
        f"each (median), {args.threads} thread(s), {cpu}:"
    )
    print(
        f"| {'proposals':>9} | {'pool':<11} | {'sampler':<46} | {'median (us)':>11} | "
        f"{'vs Detectron2':>13} | {'vs MMDet':>8} |"
    )
    print(f"|{'-' * 10}:|{'-' * 13}|{'-' * 48}|{'-' * 12}:|{'-' * 14}:|{'-' * 9}:|")
    for r in sampling:
        print(
            f"| {r['proposals']:>9} | {r['pool']:<11} | {r['sampler']:<46} | "
            f"{1e6 * r['median_s']:11.0f} | {r['vs_detectron2']:13.2f} | {r['vs_mmdet']:8.2f} |"
        )
    pools = sorted(
        {
            (r["proposals"], r["pool"], r["positives"], tuple(r["negatives_per_bin"]))
            for r in sampling
        }
    )
    for n, pool, pos, per_bin in pools:
        print(f"({n}, {pool}: {pos} positive candidates, negatives per IoU bin {list(per_bin)})")
    print(
        f"\nTraining iteration, {args.images} images at {args.size} px, {args.repeats} "
        f"iterations each (median), {args.threads} thread(s), {cpu}:"
    )
    print(
        f"| {'variant':<28} | {'median (ms)':>11} | {'ratio':>5} | {'paired ratio':>12} | "
        f"{'label_and_sample (ms)':>21} | {'sampler share':>13} |"
    )
    print(f"|{'-' * 30}|{'-' * 12}:|{'-' * 6}:|{'-' * 13}:|{'-' * 22}:|{'-' * 14}:|")
    for r in iters:
        print(
            f"| {r['variant']:<28} | {1000 * r['median_s']:11.1f} | {r['ratio']:5.3f} | "
            f"{r['paired_ratio']:12.3f} | {1000 * r['label_and_sample_median_s']:21.2f} | "
            f"{r['attributable_ratio']:13.4f} |"
        )
    print(
        "(ratio: of the medians, against the Standard row with the same number of ROIs per "
        "image; paired ratio: median over iterations of each one against the baseline's in the "
        "same round; sampler share: 1 + (extra median label_and_sample time) / baseline "
        "iteration, the part of the ratio the sampler itself accounts for)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "sampling": sampling,
                    "iterations": iters,
                    "torch": torch.__version__,
                    "cpu_count": os.cpu_count(),
                },
                f,
                indent=2,
            )
    return sampling, iters


if __name__ == "__main__":
    main()
