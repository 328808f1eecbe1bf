#!/usr/bin/env python
"""
What a sampler costs in Cascade R-CNN against what it costs in Faster R-CNN, measured side by
side in one run on the CPU (1 thread by default).

Training iteration (forward + backward + SGD step) of the TinyNet-FPN quick-schedule models,
same fixed batch (4 annotated synthetic images at 320 px), same seed, all variants interleaved
iteration by iteration: Faster R-CNN and Cascade R-CNN (3 stages), each with random sampling
(Detectron2's), IoU-balanced sampling and OHEM (paper settings), the samplers given through the
one switch (``MODEL.ROI_HEADS.NAME: "SampledROIHeads"``, ``MODEL.ROI_SAMPLER.*``). Reported:
medians, each sampler's ratio to (and ms over) random sampling of as many RoIs in the same heads
(OHEM trains on 64 per image: random sampling of 64 is its reference), and the Cascade ratio
over the Faster R-CNN ratio (target: 1 within noise; the sampler runs once, before stage 1, in
both, so its ms over the reference should match too, while the ratio also shrinks by Cascade's
larger iteration).

    python benchmarks/bench_samplers.py [--iters 20] [--threads 1] [--json out.json] [--quick]
"""

import argparse
import json

import torch
from _common import fixed_batch, load_cfg, time_interleaved, training_step

import d2_sampling  # noqa: F401  (registers models and datasets)

CONFIG = "quick_schedules/faster_rcnn_tiny_FPN_instant_test.yaml"
HEADS = {
    "Faster R-CNN": ("StandardROIHeads", []),
    "Cascade R-CNN": (
        "CascadeROIHeads",
        ["MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", "True"],
    ),
}
# name: (sampler, extra options, the random-sampling variant it is compared with). OHEM trains
# on its 64 RoIs per image (MODEL.OHEM.BATCH_SIZE_PER_IMAGE), not the heads' 128: its reference
# is random sampling of 64, or Cascade's two later stages, which see only the sampled RoIs,
# would make OHEM look cheaper there than in Faster R-CNN.
SAMPLERS = {
    "random": ("RandomSampling", [], None),
    "random, 64 RoIs": ("RandomSampling", ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64"], None),
    "IoU-balanced": ("IoUBalancedSampling", [], "random"),
    "OHEM": ("OHEMSampling", [], "random, 64 RoIs"),
}


def variants():
    """name -> yacs options, for every (heads, sampler)."""
    out = {}
    for heads, (heads_name, heads_opts) in HEADS.items():
        for sampler, (sampler_name, opts, _) in SAMPLERS.items():
            out[f"{heads}, {sampler}"] = (
                heads_opts
                + opts
                + [
                    "MODEL.ROI_HEADS.NAME",
                    "SampledROIHeads",
                    "MODEL.ROI_SAMPLER.HEADS",
                    heads_name,
                    "MODEL.ROI_SAMPLER.NAME",
                    sampler_name,
                ]
            )
    return out


def bench(iters, warmup):
    cfgs = {name: load_cfg(CONFIG, opts) for name, opts in variants().items()}
    batch = fixed_batch(next(iter(cfgs.values())), 4, 320)
    ms = time_interleaved(
        {name: training_step(cfg, batch) for name, cfg in cfgs.items()}, iters, warmup
    )
    ratios, extra_ms = {}, {}  # "<heads>, <sampler>" -> against "<heads>, <its reference>"
    for heads in HEADS:
        for sampler, (_, _, ref) in SAMPLERS.items():
            if ref is not None:
                name, base = f"{heads}, {sampler}", ms[f"{heads}, {ref}"]
                ratios[name] = ms[name] / base
                extra_ms[name] = ms[name] - base
    compared = [s for s, (_, _, ref) in SAMPLERS.items() if ref is not None]
    cascade_over_faster = {
        s: ratios[f"Cascade R-CNN, {s}"] / ratios[f"Faster R-CNN, {s}"] for s in compared
    }
    return {
        "ms": ms,
        "ratios": ratios,
        "extra_ms": extra_ms,
        "cascade_over_faster": cascade_over_faster,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--iters", type=int, default=20, help="training iterations per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="one iteration of everything")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    iters, warmup = (1, 1) if args.quick else (args.iters, 3)
    res = bench(iters, warmup)
    print(
        f"Training iteration, TinyNet-FPN, batch 4 at 320 px, {iters} iterations each, "
        f"medians, {args.threads} thread(s), torch {torch.__version__}"
    )
    for name, ms in res["ms"].items():
        ratio = res["ratios"].get(name)
        ref = SAMPLERS[name.split(", ", 1)[1]][2]
        extra = (
            f"   x{ratio:.3f} of {ref} ({res['extra_ms'][name]:+.1f} ms)"
            if ratio is not None
            else ""
        )
        print(f"  {name:<30}{ms:9.1f} ms{extra}")
    for sampler, r in res["cascade_over_faster"].items():
        print(
            f"  {sampler}: Cascade ratio / Faster R-CNN ratio = {r:.3f}   (target: 1 within noise)"
        )
    result = {**res, "iterations": iters, "threads": args.threads, "torch": torch.__version__}
    result["quick"] = args.quick
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
