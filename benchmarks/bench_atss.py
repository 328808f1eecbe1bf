#!/usr/bin/env python
"""
ATSS benchmarks, everything measured side by side in one run on the CPU:

1. ``ATSSMatcher`` against a faithful re-implementation of MMDetection's ``ATSSAssigner``
   (``d2_sampling.references.atss.mmdet_atss_assign``): median wall time per image, ratio,
   and whether the assignments are identical; ours on its grid path (the anchors' grid given,
   as the meta-architectures do) and on its general path (any anchors). Both are given the
   anchors as ``ATSSMatcher.prepare_anchors`` makes them once per batch (concatenated, centers),
   as the reference is given them concatenated; the preparation's own time is a column.
   Anchors are Detectron2's for an 800 x 1216 input over P3-P7: 20,267 (one 8S anchor per
   location, the ATSS detector) or 182,403
   (RetinaNet's 9 per location; the matcher then takes k x 9 candidates per level, the
   reference topk = 81; the "k=9 flat" rows use topk = 9 for both, MMDetection's own
   setting). GT boxes are random, log-uniform sizes 6-600 px.
2. Peak extra memory of one call (each in a fresh subprocess: VmHWM - VmRSS before the call,
   after resetting the high-water mark; glibc's mmap threshold is pinned so freed buffers go
   back to the OS at once).
3. Training iteration time (forward + backward + SGD step) of the tiny synthetic ATSS,
   RetinaNet+ATSS and RetinaNet configs, same backbone, same fixed batch and input size,
   iterations interleaved; the two ATSS models also with the grid path switched off.

    python benchmarks/bench_atss.py [--quick] [--json out.json] [--threads 1]

``--quick`` runs one tiny iteration of everything (used by the tests so this does not rot).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.structures import Boxes

from d2_sampling.modeling import ATSSMatcher, anchor_grid
from d2_sampling.references.atss import boundary_tied_gts, mmdet_atss_assign

REPO = Path(__file__).resolve().parents[1]

# (name, image h, image w, anchors per location, GT boxes, candidates per level k)
CASES = [
    ("20k x 7", 800, 1216, 1, 7, 9),
    ("20k x 50", 800, 1216, 1, 50, 9),
    ("20k x 200", 800, 1216, 1, 200, 9),
    ("182k x 50", 800, 1216, 9, 50, 9),
    ("182k x 200", 800, 1216, 9, 200, 9),
    ("182k x 50, k=9 flat", 800, 1216, 0, 50, 9),
    ("182k x 200, k=9 flat", 800, 1216, 0, 200, 9),
]
QUICK_CASES = [("quick 2k x 5", 200, 304, 1, 5, 9), ("quick 18k x 5", 200, 304, 9, 5, 9)]
STRIDES = [8, 16, 32, 64, 128]
# Cases whose peak memory is measured (two fresh subprocesses each).
MEMORY_CASES = ("20k x 7", "20k x 200", "182k x 200", "quick 18k x 5")


def make_anchors(h, w, per_location):
    """
    Detectron2's anchors over P3-P7 (per_location 1: ATSS 8S; 9 or 0: RetinaNet's 9), and
    their grid.
    """
    if per_location == 1:
        sizes, ratios = [[8 * s] for s in STRIDES], [1.0]
    else:
        sizes = [[x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)] for x in [32, 64, 128, 256, 512]]
        ratios = [0.5, 1.0, 2.0]
    gen = DefaultAnchorGenerator(sizes=sizes, aspect_ratios=ratios, strides=STRIDES, offset=0.0)
    feats = [torch.zeros(1, 1, (h + s - 1) // s, (w + s - 1) // s) for s in STRIDES]
    return gen(feats), anchor_grid(gen, feats)


def make_gt(num, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    center = torch.rand(num, 2, generator=g) * torch.tensor([w, h])
    size = torch.exp(torch.rand(num, 2, generator=g) * torch.log(torch.tensor(100.0))) * 6
    boxes = torch.cat([center - size / 2, center + size / 2], dim=1)
    return torch.stack(
        [
            boxes[:, 0].clamp(0, w),
            boxes[:, 1].clamp(0, h),
            boxes[:, 2].clamp(0, w),
            boxes[:, 3].clamp(0, h),
        ],
        dim=1,
    )


def setup_case(case, seed=0):
    name, h, w, per_loc, num_gt, k = case
    anchors, grid = make_anchors(h, w, per_loc)
    gt = make_gt(num_gt, h, w, seed)
    a = max(per_loc, 1)  # "flat" cases (0): 9 anchors per location taken as 1, MMDetection's k
    matcher = ATSSMatcher(k)
    # The "flat" cases' grid has 9 anchors per location, which that A = 1 does not describe:
    # they take the general path only.
    with_grid = matcher.prepare_anchors(anchors, a, grid if per_loc else None)
    general = matcher.prepare_anchors(anchors, a)
    flat = general.tensor
    sizes = [len(x) for x in anchors]
    gt_boxes = Boxes(gt)

    def ours():
        return matcher(gt_boxes, with_grid)

    def ours_general():
        return matcher(gt_boxes, general)

    def prepare():
        return matcher.prepare_anchors(anchors, a, grid if per_loc else None)

    def ref():
        return mmdet_atss_assign(gt, flat, sizes, k * a)

    impls = dict(ours=ours, general=ours_general, ref=ref, prepare=prepare)
    return impls, matcher, (gt, anchors, flat, sizes, k * a, with_grid.plans is not None)


def compare(ours_out, ref_out, tied):
    """
    Identical, except where a GT whose candidate set is ambiguous (tied distances at the k-th
    place: the reference's topk picks arbitrarily, ours the lower index) owns the anchor.

    Returns:
        (bool identical_outside_ties, int differing anchors, int tied GTs)
    """
    matches, labels = ours_out
    ours = torch.where(labels.bool(), matches + 1, torch.zeros_like(matches))
    ref = ref_out[0]
    diff = (ours != ref).nonzero()[:, 0]
    explained = torch.zeros_like(diff, dtype=torch.bool)
    for col in (ours, ref):
        owner = col[diff] - 1
        explained |= (owner >= 0) & tied[owner.clamp(min=0)]
    return bool(explained.all()), int(diff.numel()), int(tied.sum())


def pin_cpus(cpus, threads):
    """Pin this process to ``cpus`` (default: the last ``threads`` usable ones); returns them."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    if cpus is None:
        cpus = sorted(os.sched_getaffinity(0))[-threads:]
    os.sched_setaffinity(0, set(cpus))
    return sorted(cpus)


def median_ms(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def memory_worker(case_json, impl):
    """Runs in a subprocess: peak extra memory (MB) of one call."""
    import gc

    case = tuple(json.loads(case_json))
    fn = setup_case(case)[0][impl]
    setup_case(("warm", 64, 64, max(case[3], 1), 2, 2))[0][impl]()  # load kernels, warm up
    gc.collect()
    before = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    fn()
    peak = _rss_kb("VmHWM")
    print(json.dumps({"peak_extra_mb": (peak - before) / 1024.0}))


def measure_memory(case, impl, threads):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(threads))
    out = subprocess.run(
        [sys.executable, __file__, "--_memory", json.dumps(list(case)), impl],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_mb"]


def bench_training(quick, threads):
    """
    ms per training iteration of the tiny synthetic ATSS, RetinaNet+ATSS and RetinaNet, and of
    the two ATSS models with the grid path off (their matcher given no grid), interleaved.
    """
    from _common import time_interleaved
    from detectron2.data import DatasetCatalog, DatasetMapper
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer

    import d2_sampling  # noqa: F401
    from d2_sampling.data import prepare_datasets
    from d2_sampling.engine.setup import load_yacs_config
    from d2_sampling.modeling.meta_arch import atss as atss_module
    from d2_sampling.modeling.meta_arch import retinanet_atss as retinanet_atss_module

    prepare_datasets(["synthetic_mini_train"])
    common = [
        "MODEL.DEVICE",
        "cpu",
        "INPUT.MIN_SIZE_TRAIN",
        "(320,)",
        "INPUT.MAX_SIZE_TRAIN",
        "448",
    ]
    files = {
        "ATSS": "atss_tiny_FPN.yaml",
        "RetinaNet+ATSS": "retinanet_tiny_FPN_atss.yaml",
        "RetinaNet": "retinanet_tiny_FPN.yaml",
    }
    cfgs = {
        name: load_yacs_config(str(REPO / "configs/Synthetic" / f), common)
        for name, f in files.items()
    }
    batch_size = cfgs["ATSS"].SOLVER.IMS_PER_BATCH
    assert all(c.SOLVER.IMS_PER_BATCH == batch_size for c in cfgs.values())
    dicts = [d for d in DatasetCatalog.get("synthetic_mini_train") if d["annotations"]][:batch_size]
    torch.manual_seed(0)
    mapper = DatasetMapper(cfgs["ATSS"], is_train=True)
    batch = [mapper(dict(d)) for d in dicts]
    shapes = sorted({tuple(b["image"].shape) for b in batch})

    runs = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        model = build_model(cfg)
        model.train()
        runs[name] = (model, build_optimizer(cfg, model), True)
        if name != "RetinaNet":  # the same model, trained with the grid path off
            torch.manual_seed(0)
            model = build_model(cfg)
            model.train()
            runs[name + " (general)"] = (model, build_optimizer(cfg, model), False)

    real_grid = atss_module.anchor_grid

    def step(name):
        model, opt, use_grid = runs[name]
        grid_fn = real_grid if use_grid else (lambda *args: None)
        atss_module.anchor_grid = retinanet_atss_module.anchor_grid = grid_fn
        try:
            losses = model(batch)
        finally:
            atss_module.anchor_grid = retinanet_atss_module.anchor_grid = real_grid
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    iters, warmup = (1, 1) if quick else (25, 3)
    med = time_interleaved({name: (lambda name=name: step(name)) for name in runs}, iters, warmup)
    return {
        "batch_size": batch_size,
        "image_shapes": [list(s) for s in shapes],
        "iterations": iters,
        "ms": med,
        "atss_ms": med["ATSS"],
        "retinanet_ms": med["RetinaNet"],
        "ratio": med["ATSS"] / med["RetinaNet"],
        "grid_over_general": {
            name: med[name] / med[name + " (general)"] for name in ("ATSS", "RetinaNet+ATSS")
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--quick", action="store_true", help="one tiny iteration of everything")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--cpus",
        type=int,
        nargs="+",
        default=None,
        help="pin the process to these CPUs (default: the last --threads CPUs, where the OS "
        "allows pinning; a process that migrates between cores times noisily)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument(
        "--steady",
        action="store_true",
        help="also time the grid path and the reference in steady state: many consecutive "
        "calls of one implementation (caches warm), medians",
    )
    parser.add_argument("--_memory", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pinned = pin_cpus(args.cpus, args.threads)
    if args._memory:
        return memory_worker(*args._memory)

    cases = QUICK_CASES if args.quick else CASES
    rows = []
    for case in cases:
        impls, matcher, (gt, anchors, flat, sizes, k, on_grid) = setup_case(case)
        tied = boundary_tied_gts(gt, flat, sizes, k)
        reference = impls["ref"]()
        identical, ndiff, ntied = compare(impls["ours"](), reference, tied)
        identical_general, _, _ = compare(impls["general"](), reference, tied)
        grid_equals_general = all(
            torch.equal(x, y) for x, y in zip(impls["ours"](), impls["general"]())
        )
        reps_ours = 1 if args.quick else 15
        reps_ref = 1 if args.quick else (5 if len(flat) * len(gt) > 5e6 else 11)
        # Interleave them so that load on the shared CPU hits all alike.
        t = {name: [] for name in impls}
        for _ in range(1 if args.quick else 3):
            for name, fn in impls.items():
                reps = reps_ref if name == "ref" else reps_ours
                t[name].append(median_ms(fn, max(1, reps // 3)))
        row = {
            "case": case[0],
            "anchors": len(flat),
            "gt": len(gt),
            "anchors_per_location": max(case[3], 1),
            "topk_per_level": k,
            "grid_path": on_grid,
            "ours_ms": statistics.median(t["ours"]),
            "general_ms": statistics.median(t["general"]),
            "prepare_ms": statistics.median(t["prepare"]),
            "reference_ms": statistics.median(t["ref"]),
            "identical": identical and identical_general and grid_equals_general,
            "grid_equals_general": grid_equals_general,
            "differing_anchors": ndiff,
            "boundary_tied_gts": ntied,
        }
        row["speedup"] = row["reference_ms"] / row["ours_ms"]
        row["speedup_general"] = row["reference_ms"] / row["general_ms"]
        if args.steady and on_grid:
            # Consecutive calls of one implementation: what a warm loop costs, where the
            # interleaved blocks above start each block on caches the others filled.
            big = len(flat) * len(gt) > 5e6
            row["ours_steady_ms"] = median_ms(impls["ours"], 5 if args.quick else 300, warmup=10)
            row["reference_steady_ms"] = median_ms(impls["ref"], 1 if args.quick or big else 15)
            row["speedup_steady"] = row["reference_steady_ms"] / row["ours_steady_ms"]
        if not args.no_memory and case[0] in MEMORY_CASES:
            for impl, key in [("ours", "ours"), ("general", "general"), ("ref", "reference")]:
                row[f"{key}_peak_mb"] = measure_memory(case, impl, args.threads)
            row["memory_ratio"] = row["ours_peak_mb"] / max(row["reference_peak_mb"], 1e-9)
        rows.append(row)
        print(f"  {row['case']}: done", file=sys.stderr, flush=True)

    train = bench_training(args.quick, args.threads)

    print(
        f"ATSS matcher vs MMDetection's algorithm (torch {torch.__version__}, "
        f"{args.threads} thread(s), CPU, pinned to CPUs {pinned}); medians. "
        "grid / general: our two paths; "
        "prepare: once per batch"
    )
    header = (
        f"{'case':<22}{'anchors':>8}{'GT':>5}{'grid ms':>9}{'gen ms':>9}{'ref ms':>10}"
        f"{'grid x':>8}{'gen x':>7}{'prep ms':>8}{'grid MB':>8}{'gen MB':>7}{'ref MB':>8}"
        "  identical"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        mem = (
            f"{r['ours_peak_mb']:>8.1f}{r['general_peak_mb']:>7.1f}{r['reference_peak_mb']:>8.1f}"
            if "ours_peak_mb" in r
            else f"{'-':>8}{'-':>7}{'-':>8}"
        )
        ident = "yes" if r["identical"] else "NO"
        if r["differing_anchors"]:
            ident += f" ({r['differing_anchors']} anchors of {r['boundary_tied_gts']} tied GTs)"
        grid_ms = f"{r['ours_ms']:>9.2f}" if r["grid_path"] else f"{'-':>9}"
        grid_x = f"{r['speedup']:>7.1f}x" if r["grid_path"] else f"{'-':>8}"
        print(
            f"{r['case']:<22}{r['anchors']:>8}{r['gt']:>5}{grid_ms}{r['general_ms']:>9.2f}"
            f"{r['reference_ms']:>10.2f}{grid_x}{r['speedup_general']:>6.1f}x"
            f"{r['prepare_ms']:>8.2f}{mem}  {ident}"
        )
    steady = [r for r in rows if "speedup_steady" in r]
    if steady:
        print("\nSteady state (consecutive calls of one implementation), medians:")
        for r in steady:
            print(
                f"{r['case']:<22}grid {r['ours_steady_ms']:.3f} ms, reference "
                f"{r['reference_steady_ms']:.2f} ms: {r['speedup_steady']:.1f}x"
            )
    print()
    print(
        f"Training iteration (forward+backward+step), tiny synthetic configs, batch "
        f"{train['batch_size']}, images {train['image_shapes']}, {train['iterations']} "
        f"iterations each, medians"
    )
    for name, ms in train["ms"].items():
        print(f"  {name:<26}{ms:8.1f} ms")
    print(f"  ATSS / RetinaNet          {train['ratio']:8.3f}")
    for name, ratio in train["grid_over_general"].items():
        print(f"  {(name + ' grid / general'):<26}{ratio:8.3f}")
    result = {
        "matcher": rows,
        "training": train,
        "threads": args.threads,
        "pinned_cpus": pinned,
        "torch": torch.__version__,
        "quick": args.quick,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
