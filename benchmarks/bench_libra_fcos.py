#!/usr/bin/env python
"""
The cost of the issue-12 models, measured side by side in one run on the CPU (1 thread):

1. Training iteration (forward + backward + SGD step) of the TinyNet-FPN models of
   configs/quick_schedules/, same fixed batch (4 annotated synthetic images at 320 px), same
   seed, variants interleaved iteration by iteration so that load changes on a shared machine
   hit all of them alike:
   - FCOS + ATSS (``FCOSATSS``) against Detectron2's FCOS (``ConfigurableFCOS``, the same
     config with the meta-architecture switched); target <= 1.05x;
   - the whole Libra R-CNN (IoU-balanced sampling + balanced feature pyramid + balanced L1)
     against Faster R-CNN, and the two intermediate steps; target <= 1.15x.
2. The balanced L1 loss against smooth L1 (Detectron2's ``smooth_l1_loss``, beta 0 as its box
   head uses it) on the box deltas of 512 foreground RoIs x 4, forward + backward, relative to
   the box head's time (``box_head`` + ``box_predictor`` forward + backward on 4 x 512 RoIs of
   the same model); target: the difference <= 5% of the box head's time.

    python benchmarks/bench_libra_fcos.py [--iters 20] [--json out.json] [--quick]
"""

import argparse
import json
import statistics
import time

import torch
from _common import fixed_batch, load_cfg, time_interleaved, training_step
from detectron2.modeling import build_model
from fvcore.nn import smooth_l1_loss

import d2_sampling  # noqa: F401  (registers models and datasets)
from d2_sampling.modeling import balanced_l1_loss

QS = "quick_schedules/"
# name: (config, extra yacs options)
MODELS = {
    "FCOS": (
        QS + "fcos_atss_tiny_FPN_instant_test.yaml",
        ["MODEL.META_ARCHITECTURE", "ConfigurableFCOS"],
    ),
    "FCOS + ATSS": (QS + "fcos_atss_tiny_FPN_instant_test.yaml", []),
    "Faster R-CNN": (QS + "faster_rcnn_tiny_FPN_instant_test.yaml", []),
    "+ IoU-balanced sampling": (QS + "faster_rcnn_tiny_FPN_iou_balanced_instant_test.yaml", []),
    "+ balanced feature pyramid": (
        QS + "libra_faster_rcnn_tiny_FPN_instant_test.yaml",
        ["MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE", "smooth_l1"],
    ),
    "Libra R-CNN (+ balanced L1)": (QS + "libra_faster_rcnn_tiny_FPN_instant_test.yaml", []),
}
RATIOS = [
    ("FCOS + ATSS / FCOS", "FCOS + ATSS", "FCOS", 1.05),
    ("Libra R-CNN / Faster R-CNN", "Libra R-CNN (+ balanced L1)", "Faster R-CNN", 1.15),
    ("+ sampler / Faster R-CNN", "+ IoU-balanced sampling", "Faster R-CNN", None),
    ("+ BFP / Faster R-CNN", "+ balanced feature pyramid", "Faster R-CNN", None),
]


def bench_training(iters, warmup):
    cfgs = {name: load_cfg(cfg, opts) for name, (cfg, opts) in MODELS.items()}
    batch = fixed_batch(cfgs["Faster R-CNN"], 4, 320)
    steps = {name: training_step(cfg, batch) for name, cfg in cfgs.items()}
    ms = time_interleaved(steps, iters, warmup)
    ratios = {label: ms[a] / ms[b] for label, a, b, _ in RATIOS}
    return {"ms": ms, "ratios": ratios, "targets": {r[0]: r[3] for r in RATIOS if r[3]}}


def _median_ms(fn, repeats):
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out)


def bench_box_loss(repeats):
    """Balanced L1 vs smooth L1 on 512 x 4 deltas, against the box head on 4 x 512 RoIs."""
    cfg = load_cfg(MODELS["Faster R-CNN"][0], [])
    torch.manual_seed(0)
    model = build_model(cfg)
    roi = model.roi_heads
    features = torch.randn(4 * 512, *_pooled_shape(model))
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(512, 4, generator=gen).requires_grad_()
    target = torch.randn(512, 4, generator=gen)

    def box_head():
        scores, deltas = roi.box_predictor(roi.box_head(features))
        (scores.sum() + deltas.sum()).backward()

    def smooth():
        smooth_l1_loss(pred, target, beta=0.0, reduction="sum").backward()

    def balanced():
        balanced_l1_loss(pred, target, reduction="sum").backward()

    t = {"box_head": [], "smooth_l1": [], "balanced_l1": []}
    for _ in range(3):  # interleaved rounds
        t["box_head"].append(_median_ms(box_head, max(1, repeats // 10)))
        t["smooth_l1"].append(_median_ms(smooth, repeats))
        t["balanced_l1"].append(_median_ms(balanced, repeats))
    ms = {k: statistics.median(v) for k, v in t.items()}
    ms["extra_over_box_head"] = (ms["balanced_l1"] - ms["smooth_l1"]) / ms["box_head"]
    return ms


def _pooled_shape(model):
    """(C, H, W) of the pooled RoI features the box head takes."""
    roi = model.roi_heads
    channels = model.backbone.output_shape()[roi.box_in_features[0]].channels
    return (channels, *roi.box_pooler.output_size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--iters", type=int, default=20, help="training iterations per model")
    parser.add_argument("--repeats", type=int, default=200, help="loss calls per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="one iteration of everything")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    iters, warmup, repeats = (1, 1, 3) if args.quick else (args.iters, 3, args.repeats)
    train = bench_training(iters, warmup)
    loss = bench_box_loss(repeats)
    print(
        f"Training iteration, TinyNet-FPN, batch 4 at 320 px, {iters} iterations each, "
        f"medians, {args.threads} thread(s), torch {torch.__version__}"
    )
    for name, ms in train["ms"].items():
        print(f"  {name:<30}{ms:9.1f} ms")
    for label, ratio in train["ratios"].items():
        target = train["targets"].get(label)
        mark = (
            ""
            if target is None
            else f"   (target <= {target:.2f}: {'met' if ratio <= target else 'MISSED'})"
        )
        print(f"  {label:<30}{ratio:9.3f}{mark}")
    print("Box loss, 512 x 4 deltas, forward + backward, medians:")
    print(
        f"  smooth L1 {loss['smooth_l1']:.3f} ms, balanced L1 {loss['balanced_l1']:.3f} ms, "
        f"box head (4 x 512 RoIs) {loss['box_head']:.2f} ms"
    )
    extra = loss["extra_over_box_head"]
    print(
        f"  extra / box head: {100 * extra:.2f}%   "
        f"(target <= 5%: {'met' if extra <= 0.05 else 'MISSED'})"
    )
    result = {
        "training": train,
        "box_loss": loss,
        "threads": args.threads,
        "torch": torch.__version__,
        "quick": args.quick,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
