#!/usr/bin/env python
"""
The benchmark suite (`make bench`): accuracy and speed of every method against its baseline.

Accuracy: each synthetic config (Faster R-CNN with random sampling vs OHEM paper / OHEM
MMDetection / IoU-balanced; RetinaNet vs RetinaNet with ATSS assignment vs the ATSS detector)
is trained from scratch by ``train_net.py`` in a subprocess, once per seed, with the same
schedule, data and evaluation for every config; COCO AP/AP50/AP75/APs/APm/APl are reported as
mean and standard deviation over seeds, with the delta against the method's baseline (paired by
seed), and AP-vs-iteration curves from the periodic evaluations (TEST.EVAL_PERIOD). When
``../shared/data/coco_tiny`` exists (relative to the repository root) every method also gets one
short train-and-evaluate row on those real images: it shows the pipeline, it cannot rank methods.

Speed: the three per-component benchmarks (bench_atss.py, bench_ohem.py, bench_iou_balanced.py,
with --json), and the training iteration time of every config (median of metrics.json's
"time", which excludes data loading and evaluation) with its ratio to the baseline, plus the
peak RSS of each training process.

Outputs, under --out (default docs/; with --quick a temporary folder):
    benchmarks.json                 all results, with the machine description and wall time
    benchmarks.md                   tables
    images/benchmarks_*.png         AP vs iteration, one plot per detector family
Training runs live under --work-dir (default output/bench; with --quick OUT/runs). A run whose
result.json exists there is not run again: an interrupted suite resumes where it stopped.

    python benchmarks/suite.py                      # the full suite (`make bench`)
    python benchmarks/suite.py --quick --out /tmp/b # 1 seed, 2 iterations, mini dataset
    python benchmarks/suite.py --render-only        # re-render docs/ from docs/benchmarks.json
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COCO_TINY = REPO.parent / "shared" / "data" / "coco_tiny"

# key, label, config (under configs/), baseline key (None: a baseline), family
METHODS = [
    (
        "faster_rcnn",
        "Faster R-CNN, random sampling",
        "Synthetic/faster_rcnn_tiny_FPN_demo.yaml",
        None,
        "rcnn",
    ),
    ("ohem", "OHEM (paper)", "Synthetic/faster_rcnn_tiny_FPN_ohem.yaml", "faster_rcnn", "rcnn"),
    (
        "ohem_mmdet",
        "OHEM (MMDetection)",
        "Synthetic/faster_rcnn_tiny_FPN_ohem_mmdet.yaml",
        "faster_rcnn",
        "rcnn",
    ),
    (
        "iou_balanced",
        "IoU-balanced sampling",
        "Synthetic/faster_rcnn_tiny_FPN_iou_balanced.yaml",
        "faster_rcnn",
        "rcnn",
    ),
    ("retinanet", "RetinaNet", "Synthetic/retinanet_tiny_FPN.yaml", None, "retinanet"),
    (
        "retinanet_atss",
        "RetinaNet + ATSS assignment",
        "Synthetic/retinanet_tiny_FPN_atss.yaml",
        "retinanet",
        "retinanet",
    ),
    ("atss", "ATSS", "Synthetic/atss_tiny_FPN.yaml", "retinanet", "retinanet"),
]
# Controls (opt-in, --controls): runs that answer "why" when a method does not beat its
# baseline. Not methods: each changes one setting of a suite config and is compared with the
# suite run named by "compare" at the same seed(s).
CONTROLS = [
    dict(
        key="faster_rcnn_64",
        label="Faster R-CNN, random sampling, 64 RoIs / image",
        config="Synthetic/faster_rcnn_tiny_FPN_demo.yaml",
        opts=["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 64],
        compare="ohem",
        question="Is OHEM (paper) behind because it trains on 64 RoIs per image, not 128? The "
        "paper's own comparison: random sampling and OHEM both at B/N = 64.",
    ),
    dict(
        key="retinanet_gn",
        label="RetinaNet, GroupNorm in the head",
        config="Synthetic/retinanet_tiny_FPN.yaml",
        opts=["MODEL.RETINANET.NORM", "GN"],
        compare="retinanet",
        question="How much of the ATSS detector's lead is its GroupNorm head rather than its "
        "assignment? Detectron2's RetinaNet head has no normalisation.",
    ),
]
FAMILIES = {"rcnn": "Faster R-CNN (TinyNet-FPN)", "retinanet": "RetinaNet / ATSS (TinyNet-FPN)"}
METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
# What each sampler did, from the training scalars in metrics.json (median over the logged
# windows of a run): the evidence to read when a method does not beat its baseline.
DIAGNOSTICS = [
    "roi_head/num_fg_samples",  # foreground RoIs trained per image
    "roi_head/num_bg_samples",
    "roi_head/ohem_pool_size",  # RoIs scored by OHEM's read-only pass per image
    "roi_head/ohem_pool_fg",
    "roi_head/ohem_loss_pool",  # mean ranking loss of the pool / of the selected RoIs
    "roi_head/ohem_loss_selected",
    "roi_head/iou_balanced_neg_mean_iou",  # mean IoU (with any GT) of the sampled negatives
    "fast_rcnn/fg_cls_accuracy",
    "num_pos_anchors",  # positive anchors per image (RetinaNet, ATSS)
    "atss/num_pos_per_gt",
    "atss/gt_without_pos",
    "atss/iou_threshold",
    "total_loss",
]
BENCHES = ["bench_atss", "bench_ohem", "bench_iou_balanced"]
# The synthetic configs' schedule (configs/Base-Synthetic-*.yaml): 600 iterations, 100 warm-up,
# decays at 480 and 560. --iters rescales it so that a shorter run keeps the same shape.
BASE_ITERS, BASE_WARMUP, BASE_STEPS = 600, 100, (480, 560)
# The suite's default budget: 21 synthetic runs (7 configs x 3 seeds) must finish, with their
# evaluations, the coco_tiny rows and the speed scripts, within 2 hours on 2 CPU cores. Measured
# with 2 runs at a time, 1 thread each: ~1.2 s / iteration for the Faster R-CNN configs, ~0.8 s
# for RetinaNet / ATSS, ~15-20 s per evaluation of synthetic_val. 600 iterations would take
# ~3 h; 400 iterations (schedule rescaled: warm-up 67, decays at 320 and 373) with evaluations
# every 100 fit in ~1 h 45 min.
SUITE_ITERS, SUITE_JOBS = 400, 2


def method_table():
    return [dict(key=k, label=lab, config=c, baseline=b, family=f) for k, lab, c, b, f in METHODS]


# ---------------------------------------------------------------------------------------------
# Running


def schedule_opts(iters, quick):
    """Overrides for an ``iters``-iteration schedule of the same shape as the configs'."""
    if quick:
        return ["SOLVER.MAX_ITER", iters, "SOLVER.WARMUP_ITERS", 0, "SOLVER.STEPS", "()"]
    if iters == BASE_ITERS:
        return []  # the configs' own schedule, untouched
    scale = iters / BASE_ITERS
    steps = tuple(max(1, round(s * scale)) for s in BASE_STEPS)
    return [
        "SOLVER.MAX_ITER",
        iters,
        "SOLVER.WARMUP_ITERS",
        max(0, round(BASE_WARMUP * scale)),
        "SOLVER.STEPS",
        "(" + ",".join(map(str, steps)) + ",)",
    ]


def run_train(method, seed, out_dir, opts, extra_args, threads, log, keep_checkpoints=False):
    """
    Train and evaluate one config in a subprocess, unless ``out_dir/result.json`` exists.

    Returns:
        dict: the run's result (metrics, AP-vs-iteration, iteration time, peak RSS).
    """
    result_file = out_dir / "result.json"
    if result_file.is_file():
        log(f"  skip {out_dir} (done)")
        result = json.loads(result_file.read_text())
        if (out_dir / "metrics.json").is_file():  # re-read: picks up newly parsed statistics
            diverged = result.get("status") == "diverged"
            result.update(parse_metrics(out_dir / "metrics.json", allow_no_eval=diverged))
        return result
    if out_dir.exists():  # an interrupted run: start it over, same seed, same result
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    cmd = [
        sys.executable,
        str(REPO / "train_net.py"),
        *extra_args,
        "--config-file",
        str(REPO / "configs" / method["config"]),
        "SEED",
        seed,
        "MODEL.DEVICE",
        "cpu",
        "OUTPUT_DIR",
        str(out_dir),
        *opts,
    ]
    cmd = [str(c) for c in cmd]
    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1"
    )
    log(f"  run  {out_dir}")
    t0 = time.time()
    with open(out_dir / "log.txt", "w") as logf:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT)
        # wait4: this child's own rusage, so ru_maxrss is its peak RSS (KiB on Linux; the
        # data-loader workers it reaped count as well, as their own maximum).
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - t0
    log_text = (out_dir / "log.txt").read_text()
    diverged = proc.returncode != 0 and "FloatingPointError" in log_text
    if proc.returncode != 0 and not diverged:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{log_text[-4000:]}")
    # A run that diverged (Detectron2's FloatingPointError) is a result, not a crash of the
    # suite: it is recorded and reported as such, with no metrics.
    result = parse_metrics(out_dir / "metrics.json", allow_no_eval=diverged)
    if diverged:
        result["status"] = "diverged"
        log(f"  DIVERGED {out_dir} (see its log.txt)")
    result.update(
        method=method["key"],
        seed=seed,
        wall_s=wall,
        peak_rss_mb=rusage.ru_maxrss / 1024.0,
        command=cmd[1:],
    )
    result_file.write_text(json.dumps(result, indent=1))
    if not keep_checkpoints:  # tens of MB per run, and a finished run is never resumed
        for f in out_dir.glob("*.pth"):
            f.unlink()
    return result


def parse_metrics(path, allow_no_eval=False):
    """Final COCO metrics, AP-vs-iteration points and median iteration time from metrics.json."""
    records = [json.loads(line) for line in open(path) if line.strip()]
    evals = [r for r in records if "bbox/AP" in r]
    if not evals and not allow_no_eval:
        raise RuntimeError(f"{path}: no evaluation record")
    final = {m: (_num(evals[-1].get(f"bbox/{m}")) if evals else None) for m in METRICS}
    # x = iterations done. Periodic evaluations are logged at the index of the last finished
    # iteration (i: i + 1 done), the final one at MAX_ITER; one at the last step is the final.
    last = max((r.get("iteration", 0) for r in records), default=0)
    points = {}
    for r in evals:
        it = r["iteration"]
        points[it if it == last else it + 1] = _num(r["bbox/AP"])
    curve = [[it, ap] for it, ap in sorted(points.items())]
    train = [r for r in records if "time" in r]
    # The first logged window includes start-up (allocations, first data batches): skip it when
    # there are others.
    times = [r["time"] for r in (train[1:] if len(train) > 1 else train)]
    data_times = [r["data_time"] for r in train if "data_time" in r]
    return {
        "metrics": final,
        "ap_curve": curve,
        "iter_time_s": statistics.median(times) if times else None,
        "data_time_s": statistics.median(data_times) if data_times else None,
        "iterations": max((r.get("iteration", 0) for r in records), default=0),
        "diagnostics": {
            k: statistics.median(vs)
            for k in DIAGNOSTICS
            if (vs := [r[k] for r in records if isinstance(r.get(k), (int, float))])
        },
    }


ERROR_TYPES = ["tp", "duplicate", "wrong_class", "localization", "background"]


def error_profile(detections_file, gt_file):
    """
    What the final detections are, at a fixed operating point: the top N detections of the
    test set by score, N = the number of ground-truth boxes, each put in one class, in score
    order (greedy, as COCO's matching):

    - ``tp``: IoU >= 0.5 with a not yet matched GT box of its class;
    - ``duplicate``: IoU >= 0.5 with a GT box of its class already matched;
    - ``wrong_class``: IoU >= 0.5 only with GT boxes of other classes;
    - ``localization``: best IoU with any GT box in [0.1, 0.5);
    - ``background``: IoU < 0.1 with every GT box.

    A rank-based cut, not a score threshold, so that methods whose scores are calibrated
    differently (OHEM trains on hard RoIs only) are compared at the same number of detections.

    Returns:
        dict: the fraction of the N detections of each type, ``recall`` (= tp fraction, the
        share of GT boxes found) and ``n``; None when a file is missing.
    """
    import numpy as np

    if not (Path(detections_file).is_file() and Path(gt_file).is_file()):
        return None
    gt = json.loads(Path(gt_file).read_text())
    boxes, classes = {}, {}
    for a in gt["annotations"]:
        if a.get("iscrowd", 0):
            continue
        x, y, w, h = a["bbox"]
        boxes.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
        classes.setdefault(a["image_id"], []).append(a["category_id"])
    boxes = {k: np.asarray(v, dtype=np.float64) for k, v in boxes.items()}
    classes = {k: np.asarray(v) for k, v in classes.items()}
    matched = {k: np.zeros(len(v), dtype=bool) for k, v in boxes.items()}
    n = sum(len(v) for v in boxes.values())
    dets = sorted(json.loads(Path(detections_file).read_text()), key=lambda d: -d["score"])[:n]
    counts = dict.fromkeys(ERROR_TYPES, 0)
    for d in dets:
        g = boxes.get(d["image_id"])
        if g is None or len(g) == 0:
            counts["background"] += 1
            continue
        x, y, w, h = d["bbox"]
        iw = np.clip(np.minimum(x + w, g[:, 2]) - np.maximum(x, g[:, 0]), 0, None)
        ih = np.clip(np.minimum(y + h, g[:, 3]) - np.maximum(y, g[:, 1]), 0, None)
        inter = iw * ih
        iou = inter / (w * h + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter)
        same = classes[d["image_id"]] == d["category_id"]
        free = same & ~matched[d["image_id"]] & (iou >= 0.5)
        if free.any():
            j = int(np.argmax(np.where(free, iou, -1.0)))
            matched[d["image_id"]][j] = True
            counts["tp"] += 1
        elif (same & (iou >= 0.5)).any():
            counts["duplicate"] += 1
        elif (iou >= 0.5).any():
            counts["wrong_class"] += 1
        elif (iou >= 0.1).any():
            counts["localization"] += 1
        else:
            counts["background"] += 1
    out = {k: v / n for k, v in counts.items()} if n else dict.fromkeys(ERROR_TYPES, None)
    out.update(recall=out["tp"], n=n)
    return out


def _num(x):
    """COCOeval writes NaN for an empty area range; JSON wants null."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return float(x)


def run_bench(name, out_file, quick, threads, log):
    if out_file.is_file():
        log(f"  skip {name} (done)")
        return json.loads(out_file.read_text())
    cmd = [
        sys.executable,
        str(HERE / f"{name}.py"),
        "--json",
        str(out_file) + ".part",
        "--threads",
        str(threads),
    ]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    log(f"  run  {name}")
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    data = json.loads(Path(str(out_file) + ".part").read_text())
    data["_wall_s"] = time.time() - t0
    data["_stdout"] = proc.stdout
    out_file.write_text(json.dumps(data, indent=1))
    os.remove(str(out_file) + ".part")
    return data


def coco_tiny_args():
    ann = COCO_TINY / "annotations"
    return [
        "--coco-dataset",
        "coco_tiny_train",
        ann / "instances_train2017.json",
        COCO_TINY / "train2017",
        "--coco-dataset",
        "coco_tiny_val",
        ann / "instances_val2017.json",
        COCO_TINY / "val2017",
    ]


def coco_tiny_available():
    ann = COCO_TINY / "annotations"
    return all(
        p.exists()
        for p in (
            ann / "instances_train2017.json",
            ann / "instances_val2017.json",
            COCO_TINY / "train2017",
            COCO_TINY / "val2017",
        )
    )


def num_classes_opts(method, n):
    key = (
        "MODEL.ROI_HEADS.NUM_CLASSES"
        if method["family"] == "rcnn"
        else "MODEL.RETINANET.NUM_CLASSES"
    )
    return [key, n]


def machine_description():
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem_gb = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    import detectron2
    import torch

    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": round(mem_gb, 1) if mem_gb else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
    }


def _git(*args):
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""


def run_suite(args, out, work, log):
    methods = method_table()
    if args.methods:
        unknown = set(args.methods) - {m["key"] for m in methods}
        if unknown:
            raise SystemExit(f"suite.py: unknown --methods {sorted(unknown)}")
        methods = [m for m in methods if m["key"] in args.methods]
    iters = args.iters if args.iters is not None else (2 if args.quick else SUITE_ITERS)
    eval_period = args.eval_period if args.eval_period is not None else (0 if args.quick else 100)
    seeds = list(range(args.seeds))
    common = schedule_opts(iters, args.quick) + ["TEST.EVAL_PERIOD", eval_period]
    if args.quick:
        common += [
            "DATASETS.TRAIN",
            '("synthetic_mini_train",)',
            "DATASETS.TEST",
            '("synthetic_mini_val",)',
            "DATALOADER.NUM_WORKERS",
            0,
            "SOLVER.IMS_PER_BATCH",
            2,
        ]
    common += ["SOLVER.CHECKPOINT_PERIOD", 10**7]  # only model_final: runs restart, not resume

    # Seed-major: every method's seed-0 run comes before any seed-1 run, so the runs sharing
    # the machine at any time are a mix of methods, not one method's seeds side by side.
    jobs = []
    for s in seeds:
        for m in methods:
            jobs.append((m, s, work / "synthetic" / m["key"] / f"seed{s}", common, []))
    # --quick leaves coco_tiny out unless --coco asks for it (7 more runs: ~2 min on 2 cores).
    use_coco = (args.coco or not (args.no_coco or args.quick)) and coco_tiny_available()
    if use_coco:
        coco_iters = args.coco_iters if args.coco_iters is not None else (2 if args.quick else 100)
        # From scratch on 80 real classes: the synthetic schedule's shape (warm-up, decays)
        # rescaled, and gradient clipping (norm 5); without them the Faster R-CNN rows
        # diverged at iteration ~60 (NaN boxes) at LR 0.02. The same for every method.
        coco_opts = schedule_opts(coco_iters, args.quick) + [
            "SOLVER.CLIP_GRADIENTS.ENABLED",
            True,
            "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
            "norm",
            "SOLVER.CLIP_GRADIENTS.CLIP_VALUE",
            5.0,
            "DATASETS.TRAIN",
            '("coco_tiny_train",)',
            "DATASETS.TEST",
            '("coco_tiny_val",)',
            "TEST.EVAL_PERIOD",
            0,
            "SOLVER.CHECKPOINT_PERIOD",
            10**7,
            "DATALOADER.NUM_WORKERS",
            0 if args.quick else 1,
        ]
        if args.quick:
            coco_opts += ["SOLVER.IMS_PER_BATCH", 2]
        for m in methods:
            jobs.append(
                (
                    m,
                    0,
                    work / "coco_tiny" / m["key"] / "seed0",
                    coco_opts + num_classes_opts(m, 80),
                    coco_tiny_args(),
                )
            )

    controls = []
    if args.controls:
        control_seeds = list(range(args.control_seeds))
        for c in CONTROLS:
            for s in control_seeds:
                controls.append((c, s))
                jobs.append(
                    (c, s, work / "controls" / c["key"] / f"seed{s}", common + c["opts"], [])
                )

    def do(job):
        m, s, d, opts, extra = job
        return d, run_train(m, s, d, opts, extra, args.threads, log, args.keep_checkpoints)

    log(f"accuracy suite: {len(jobs)} runs, {args.jobs} at a time, work dir {work}")
    speed = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        if args.no_speed:
            bench_futures = {}
        else:
            (work / "speed").mkdir(parents=True, exist_ok=True)
            if args.quick:
                # Nothing is timed for real in --quick: let the scripts share the pool.
                bench_futures = {
                    name: pool.submit(
                        run_bench, name, work / "speed" / f"{name}.json", True, args.threads, log
                    )
                    for name in BENCHES
                }
            else:
                bench_futures = {}
        done = dict(pool.map(do, jobs))
        speed = {name: f.result() for name, f in bench_futures.items()}

    synthetic = {
        m["key"]: [done[work / "synthetic" / m["key"] / f"seed{s}"] for s in seeds] for m in methods
    }
    # Error profile of each synthetic run's final detections (cheap: recomputed every time).
    from d2_sampling.data.synthetic import synthetic_paths

    test_name = "synthetic_mini_val" if args.quick else "synthetic_val"
    gt_file = synthetic_paths(test_name)[0]
    for m in methods:
        for s, r in zip(seeds, synthetic[m["key"]]):
            dets = work / "synthetic" / m["key"] / f"seed{s}" / "inference" / test_name
            r["errors"] = error_profile(dets / "coco_instances_results.json", gt_file)
    coco = (
        {m["key"]: done[work / "coco_tiny" / m["key"] / "seed0"] for m in methods}
        if use_coco
        else {}
    )

    control_runs = {}
    for c, s in controls:
        control_runs.setdefault(c["key"], []).append(
            done[work / "controls" / c["key"] / f"seed{s}"]
        )

    if not args.no_speed and not args.quick:
        # Alone on the machine, after the training runs: these are timings.
        log("speed suite")
        for name in BENCHES:
            speed[name] = run_bench(
                name, work / "speed" / f"{name}.json", args.quick, args.threads, log
            )
    return {
        "methods": methods,
        "settings": {
            "quick": args.quick,
            "seeds": seeds,
            "iters": iters,
            "eval_period": eval_period,
            "threads_per_run": args.threads,
            "parallel_runs": args.jobs,
            "train_dataset": "synthetic_mini_train" if args.quick else "synthetic_train",
            "test_dataset": "synthetic_mini_val" if args.quick else "synthetic_val",
            "common_overrides": [str(x) for x in common],
            "coco_tiny": use_coco,
        },
        "synthetic": synthetic,
        "coco_tiny": coco,
        "controls": [
            dict(c, runs=control_runs[c["key"]]) for c in CONTROLS if c["key"] in control_runs
        ],
        "speed": speed,
    }


# ---------------------------------------------------------------------------------------------
# Summaries and rendering


def mean_std(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarize(results):
    """Per method: mean/std of each metric, paired delta vs baseline, iteration time ratio."""
    runs = results["synthetic"]
    out = {}
    for m in results["methods"]:
        rs = runs[m["key"]]
        row = {"n": len(rs)}
        for k in METRICS:
            row[k] = mean_std([r["metrics"][k] for r in rs])
        row["iter_time_s"] = statistics.median(
            [r["iter_time_s"] for r in rs if r["iter_time_s"]] or [float("nan")]
        )
        row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rs)
        b = m["baseline"]
        if b and b in runs:
            base_by_seed = {r["seed"]: r for r in runs[b]}
            for k in METRICS:
                diffs = [
                    r["metrics"][k] - base_by_seed[r["seed"]]["metrics"][k]
                    for r in rs
                    if r["seed"] in base_by_seed
                    and r["metrics"][k] is not None
                    and base_by_seed[r["seed"]]["metrics"][k] is not None
                ]
                row["delta_" + k] = mean_std(diffs)
            bt = statistics.median(
                [r["iter_time_s"] for r in runs[b] if r["iter_time_s"]] or [float("nan")]
            )
            row["time_ratio"] = row["iter_time_s"] / bt if bt else None
        out[m["key"]] = row
    return out


def _f(x, nd=1):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _pm(ms, nd=1, signed=False):
    m, s = ms if ms else (None, None)
    if m is None:
        return "-"
    body = f"{m:+.{nd}f}" if signed else f"{m:.{nd}f}"
    return f"{body} ± {s:.{nd}f}"


def verdict(delta):
    """Paired AP difference against the spread of that difference over seeds."""
    m, s = delta if delta else (None, None)
    if m is None:
        return "-"
    if s == 0.0:
        return "better (1 seed)" if m > 0 else "not better (1 seed)"
    if m > s:
        return "better"
    if m < -s:
        return "worse"
    return "within noise"


def plot_curves(results, images_dir):
    """One PNG per family: mean AP vs iteration (band: ± 1 std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fam, title, ms in _families(results):
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
        for m in ms:
            by_iter = {}
            for r in results["synthetic"][m["key"]]:
                for it, ap in r["ap_curve"]:
                    if ap is not None:
                        by_iter.setdefault(it, []).append(ap)
            its = sorted(by_iter)
            mean = [statistics.fmean(by_iter[i]) for i in its]
            std = [statistics.stdev(by_iter[i]) if len(by_iter[i]) > 1 else 0.0 for i in its]
            style = "--" if m["baseline"] is None else "-"
            (line,) = ax.plot(its, mean, style, marker="o", ms=3, label=m["label"])
            ax.fill_between(
                its,
                [a - b for a, b in zip(mean, std)],
                [a + b for a, b in zip(mean, std)],
                color=line.get_color(),
                alpha=0.15,
            )
        n = len(results["settings"]["seeds"])
        ax.set_title(f"{title}: COCO AP vs iteration ({n} seed{'s' if n > 1 else ''})")
        ax.set_xlabel("iteration")
        ax.set_ylabel("bbox AP (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = images_dir / f"benchmarks_{fam}_ap.png"
        fig.savefig(path)
        plt.close(fig)
        paths[fam] = path
    return paths


def render(results, out):
    """Write out/benchmarks.md and out/images/benchmarks_*.png from the results dict."""
    summary = summarize(results)
    plots = plot_curves(results, out / "images")
    st, mach = results["settings"], results["machine"]
    labels = {m["key"]: m["label"] for m in results["methods"]}
    L = ["# Benchmarks", ""]
    L += [
        "Generated by `benchmarks/suite.py` (`make bench`) from `benchmarks.json` next to this "
        "file; do not edit by hand. What the results mean, and what was investigated where a "
        "method does not beat its baseline: [benchmark_analysis.md](benchmark_analysis.md).",
        "",
        f"- date: {results['date']}; wall time of the suite: "
        f"{_fmt_duration(results['wall_s'])}"
        + (
            " (resumed; summed over invocations, resumed at commit(s) "
            + ", ".join(f"`{c[:10]}`" for c in results.get("resumed_at_commits", []))
            + ")"
            if results.get("resumed")
            else ""
        ),
        f"- machine: {mach['cpu_model']}, {mach['usable_cores']} usable cores "
        f"({mach['cpu_count']} online), {mach['memory_gb']} GB; {mach['platform']}",
        f"- stack: Python {mach['python']}, torch {mach['torch']}, detectron2 "
        f"{mach['detectron2']}; commit `{(mach['git_commit'] or '?')[:10]}`"
        + (" (with uncommitted changes)" if mach["git_dirty"] else ""),
        f"- command: `{results['command']}`",
        f"- schedule: {st['iters']} iterations per run, evaluation every {st['eval_period'] or '-'}"
        f" iterations and at the end; train `{st['train_dataset']}`, test `{st['test_dataset']}`;"
        f" seeds {st['seeds']}; {st['threads_per_run']} thread(s) per run, "
        f"{st['parallel_runs']} run(s) at a time",
    ]
    control_runs = [r for c in results.get("controls") or [] for r in c["runs"]]
    if control_runs:
        control_s = sum(r["wall_s"] for r in control_runs) / st["parallel_runs"]
        L.append(
            f"- of that wall time, the {len(control_runs)} opt-in control runs (`--controls`) "
            f"took about {_fmt_duration(control_s)}"
            " (their summed run time / runs at a time)"
        )
    if st["quick"]:
        L += ["", "**Quick run (`--quick`): a smoke test of the suite, the numbers mean nothing.**"]
    L += [
        "",
        "## Accuracy on the synthetic dataset",
        "",
        "COCO box metrics (%), mean ± standard deviation over seeds. Δ: the method minus its "
        "baseline trained with the same seed, mean ± std over seeds; verdict: better / worse "
        "when the mean Δ AP exceeds its std, else within noise.",
        "",
    ]
    for fam, title, ms in _families(results):
        L += [
            f"### {title}",
            "",
            "| method | " + " | ".join(METRICS) + " | Δ AP | Δ AP50 | Δ AP75 | verdict |",
            "|---|" + "---:|" * (len(METRICS) + 3) + "---|",
        ]
        for m in ms:
            s = summary[m["key"]]
            cells = [_pm(s[k]) for k in METRICS]
            if not m["baseline"]:
                d, v = ["(baseline)", "", ""], ""
            elif "delta_AP" in s:
                d = [_pm(s["delta_" + k], signed=True) for k in ("AP", "AP50", "AP75")]
                v = verdict(s["delta_AP"])
            else:  # --methods left the baseline out
                d, v = ["(no baseline run)", "", ""], ""
            L.append(f"| {m['label']} | " + " | ".join(cells + d) + f" | {v} |")
        L.append("")
        if fam in plots:
            rel = os.path.relpath(plots[fam], out)
            L += [f"![{title}: AP vs iteration]({rel})", ""]
    L += render_diagnostics(results)
    L += render_errors(results)
    L += render_controls(results)
    if results.get("coco_tiny"):
        L += [
            "## coco_tiny (real images, pipeline check)",
            "",
            "One seed, a short schedule: 80 COCO 2017 images to train, 80 to test, 80 classes. "
            "Far too small to rank methods; it shows that every method trains and evaluates "
            "on real images.",
            "",
            "| method | iterations | " + " | ".join(METRICS) + " |",
            "|---|---:|" + "---:|" * len(METRICS),
        ]
        for k, r in results["coco_tiny"].items():
            if r.get("status") == "diverged":
                cells = [f"diverged at iteration {r['iterations']}"] + [""] * (len(METRICS) - 1)
            else:
                cells = [_f(r["metrics"][x]) for x in METRICS]
            L.append(f"| {labels[k]} | {r['iterations']} | " + " | ".join(cells) + " |")
        L.append("")
    L += [
        "## Speed",
        "",
        "### Training iteration, every config",
        "",
        "Median of metrics.json's `time` (forward, backward, step; data loading and evaluation "
        "excluded) over the runs above, ratio to the baseline's median from the same suite, "
        "peak RSS of the training process (max over seeds).",
        "",
        "| method | s / iteration | ratio to baseline | peak RSS (MB) |",
        "|---|---:|---:|---:|",
    ]
    for m in results["methods"]:
        s = summary[m["key"]]
        ratio = _f(s.get("time_ratio"), 2) if m["baseline"] else "(baseline)"
        L.append(
            f"| {m['label']} | {_f(s['iter_time_s'], 3)} | {ratio} | {_f(s['peak_rss_mb'], 0)} |"
        )
    L.append("")
    L += render_benches(results.get("speed", {}))
    (out / "benchmarks.md").write_text("\n".join(L).rstrip() + "\n")
    return out / "benchmarks.md"


DIAGNOSTIC_COLUMNS = {
    "rcnn": [
        ("fg RoIs / img", "roi_head/num_fg_samples", 1),
        ("bg RoIs / img", "roi_head/num_bg_samples", 1),
        ("OHEM pool / img", "roi_head/ohem_pool_size", 0),
        ("OHEM loss: pool", "roi_head/ohem_loss_pool", 3),
        ("OHEM loss: selected", "roi_head/ohem_loss_selected", 3),
        ("mean IoU of negatives", "roi_head/iou_balanced_neg_mean_iou", 3),
        ("fg cls accuracy", "fast_rcnn/fg_cls_accuracy", 3),
        ("total loss", "total_loss", 3),
    ],
    "retinanet": [
        ("positive anchors / img", "num_pos_anchors", 1),
        ("positives / GT", "atss/num_pos_per_gt", 2),
        ("GTs without a positive", "atss/gt_without_pos", 3),
        ("IoU threshold", "atss/iou_threshold", 3),
        ("total loss", "total_loss", 3),
    ],
}


def render_errors(results):
    """Error profile of the final detections (see ``error_profile``), mean over seeds."""
    if not any(r.get("errors") for rs in results["synthetic"].values() for r in rs):
        return []
    L = [
        "## What the final detections are",
        "",
        "The top N detections on the test set by score, N = its number of ground-truth boxes "
        "(a rank cut, so scores calibrated differently compare fairly), each classified in "
        "score order: found a GT box (IoU >= 0.5, its class, first match: the recall at N), "
        "duplicate of a found box, right place but wrong class, poorly localised (best IoU "
        "0.1-0.5), or background (IoU < 0.1 with every GT box). % of N, mean over seeds.",
        "",
        "| method | found (recall) | duplicate | wrong class | poorly localised | background |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in results["methods"]:
        runs = [r["errors"] for r in results["synthetic"][m["key"]] if r.get("errors")]
        cells = [
            _f(mean_std([100 * e[k] for e in runs if e[k] is not None])[0]) for k in ERROR_TYPES
        ]
        L.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    L.append("")
    return L


def render_controls(results):
    """The opt-in control runs against the suite run each is compared with, seed by seed."""
    controls = results.get("controls") or []
    if not controls:
        return []
    labels = {m["key"]: m["label"] for m in results["methods"]}
    L = [
        "## Controls",
        "",
        "Opt-in runs (`--controls`) that change one setting of a suite config, to explain a "
        "result; same schedule and data, compared with the suite run of the same seed(s). "
        "AP: mean over the control's seeds.",
        "",
        "| control | question | seeds | AP | AP50 | compared with | its AP (same seeds) | Δ AP |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ]
    for c in controls:
        runs = c["runs"]
        ref = {r["seed"]: r for r in results["synthetic"].get(c["compare"], [])}
        seeds = [r["seed"] for r in runs]
        ap = mean_std([r["metrics"]["AP"] for r in runs])
        ap50 = mean_std([r["metrics"]["AP50"] for r in runs])
        ref_ap = mean_std([ref[s]["metrics"]["AP"] for s in seeds if s in ref])
        pairs = [
            (r["metrics"]["AP"], ref[r["seed"]]["metrics"]["AP"]) for r in runs if r["seed"] in ref
        ]
        delta = mean_std([a - b for a, b in pairs if a is not None and b is not None])
        L.append(
            f"| {c['label']} | {c['question']} | {seeds} | {_f(ap[0])} | {_f(ap50[0])} | "
            f"{labels.get(c['compare'], c['compare'])} | {_f(ref_ap[0])} | "
            f"{_f(delta[0]) if delta[0] is None else f'{delta[0]:+.1f}'} |"
        )
    L.append("")
    return L


def _families(results):
    """(family key, title, its methods) for each family with at least one method in results."""
    for fam, title in FAMILIES.items():
        ms = [m for m in results["methods"] if m["family"] == fam]
        if ms:
            yield fam, title, ms


def render_diagnostics(results):
    """What each sampler did: training scalars, mean over seeds of each run's median."""
    L = [
        "## What the samplers did",
        "",
        "Training scalars from each run's metrics.json: the median over the run's logged "
        "windows, averaged over seeds (- : the method does not log it). The losses and the "
        "foreground classification accuracy are measured on the RoIs each method trains on, so "
        "they do not compare across methods: OHEM trains on the RoIs it got most wrong, whose "
        "accuracy is low by construction.",
        "",
    ]
    for fam, title, ms in _families(results):
        cols = DIAGNOSTIC_COLUMNS[fam]
        L += [
            f"### {title}",
            "",
            "| method | " + " | ".join(c[0] for c in cols) + " |",
            "|---|" + "---:|" * len(cols),
        ]
        for m in ms:
            cells = []
            for _, key, nd in cols:
                vals = [r.get("diagnostics", {}).get(key) for r in results["synthetic"][m["key"]]]
                cells.append(_f(mean_std(vals)[0], nd))
            L.append(f"| {m['label']} | " + " | ".join(cells) + " |")
        L.append("")
    return L


def render_benches(speed):
    L = []
    a = speed.get("bench_atss")
    if a:
        L += [
            "### ATSS matcher (`benchmarks/bench_atss.py`)",
            "",
            "| case | anchors | GT | ours (ms) | MMDetection algorithm (ms) | speedup | "
            "ours peak (MB) | reference peak (MB) | identical |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in a.get("matcher", []):
            L.append(
                f"| {r['case']} | {r['anchors']} | {r['gt']} | {_f(r['ours_ms'], 2)} | "
                f"{_f(r['reference_ms'], 2)} | {_f(r['speedup'], 1)}x | "
                f"{_f(r.get('ours_peak_mb'))} | {_f(r.get('reference_peak_mb'))} | "
                f"{'yes' if r['identical'] else 'no'} |"
            )
        t = a.get("training")
        if t:
            L += [
                "",
                f"Training iteration, batch {t['batch_size']}: ATSS {_f(t['atss_ms'])} ms, "
                f"RetinaNet {_f(t['retinanet_ms'])} ms, ratio {_f(t['ratio'], 3)}.",
            ]
        L.append("")
    o = speed.get("bench_ohem")
    if o:
        L += [
            "### OHEM (`benchmarks/bench_ohem.py`)",
            "",
            "| variant | median (ms) | ratio |",
            "|---|---:|---:|",
        ]
        for r in o.get("iterations", []) + o.get("r50_iterations", []):
            L.append(f"| {r['variant']} | {_f(1000 * r['median_s'])} | {_f(r['ratio'], 2)} |")
        sel = o.get("selection", [])
        if sel:
            L += [
                "",
                "| box head | read-only forward (ms) | selection with NMS (ms) | ratio |",
                "|---|---:|---:|---:|",
            ]
            for r in sel:
                L.append(
                    f"| {r['head']} | {_f(1000 * r['readonly_forward_median_s'], 2)} | "
                    f"{_f(1000 * r['select_nms_median_s'], 2)} | "
                    f"{_f(r['select_nms_over_forward'], 3)} |"
                )
        L.append("")
    i = speed.get("bench_iou_balanced")
    if i:
        L += [
            "### IoU-balanced sampling (`benchmarks/bench_iou_balanced.py`)",
            "",
            "| proposals | pool | sampler | median (µs) | vs Detectron2 | vs MMDetection |",
            "|---:|---|---|---:|---:|---:|",
        ]
        for r in i.get("sampling", []):
            L.append(
                f"| {r['proposals']} | {r['pool']} | {r['sampler']} | "
                f"{_f(1e6 * r['median_s'], 0)} | {_f(r['vs_detectron2'], 2)} | "
                f"{_f(r['vs_mmdet'], 2)} |"
            )
        L += ["", "| variant | median (ms) | ratio |", "|---|---:|---:|"]
        for r in i.get("iterations", []):
            L.append(f"| {r['variant']} | {_f(1000 * r['median_s'])} | {_f(r['ratio'], 3)} |")
        L.append("")
    return L


def _fmt_duration(s):
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return (f"{h} h " if h else "") + f"{m} min {sec} s"


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, 2 iterations, mini dataset, bench scripts with --quick; "
        "output to a temporary folder unless --out is given",
    )
    parser.add_argument("--out", help="folder for benchmarks.json/.md and images/ (default docs/)")
    parser.add_argument("--work-dir", help="training runs (default output/bench, quick: OUT/runs)")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per config (default 3; quick 1)")
    parser.add_argument(
        "--iters",
        type=int,
        help=f"iterations per run (default {SUITE_ITERS}; the configs' own: {BASE_ITERS})",
    )
    parser.add_argument(
        "--eval-period",
        type=int,
        help="evaluate every N iterations for the AP curves (default 100)",
    )
    parser.add_argument(
        "--methods", nargs="+", help="subset of: " + " ".join(k for k, *_ in METHODS)
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help=f"training runs at a time (default {SUITE_JOBS})"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run (default: usable cores // jobs)",
    )
    parser.add_argument("--no-coco", action="store_true", help="skip the coco_tiny rows")
    parser.add_argument("--coco", action="store_true", help="coco_tiny rows also with --quick")
    parser.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep each run's model_final.pth (deleted by default)",
    )
    parser.add_argument("--coco-iters", type=int, help="iterations of a coco_tiny run (100)")
    parser.add_argument("--no-speed", action="store_true", help="skip the bench_*.py scripts")
    parser.add_argument(
        "--controls",
        action="store_true",
        help="also run the control runs (CONTROLS: one setting changed, to explain a result)",
    )
    parser.add_argument(
        "--control-seeds", type=int, default=1, help="seeds 0..N-1 per control run (default 1)"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="re-render benchmarks.md and the plots from OUT/benchmarks.json",
    )
    args = parser.parse_args(argv)

    if args.out:
        out = Path(args.out).resolve()
    elif args.quick and not args.render_only:
        out = Path(tempfile.mkdtemp(prefix="d2s_bench_quick_"))
    else:
        out = REPO / "docs"
    out.mkdir(parents=True, exist_ok=True)
    json_file = out / "benchmarks.json"
    if args.render_only:
        results = json.loads(json_file.read_text())
        print(f"rendered {render(results, out)}")
        return results

    if args.jobs is None:
        args.jobs = SUITE_JOBS
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if args.threads is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        args.threads = max(1, cores // args.jobs)
    work = (
        Path(args.work_dir).resolve()
        if args.work_dir
        else (out / "runs" if args.quick else REPO / "output" / "bench")
    )
    work.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {msg}", flush=True)

    # Wall time accumulates over resumed invocations (kept in the work dir).
    # The machine and commit of the first invocation are kept there too: a resumed suite
    # reports the code its runs were trained with (and the commits that resumed it).
    clock_file = work / "wall_s.json"
    state = json.loads(clock_file.read_text()) if clock_file.is_file() else {}
    prior = state.get("wall_s", 0.0)
    now = machine_description()
    machine = state.get("machine", now)
    resumed_at = state.get("resumed_at_commits", []) + ([now["git_commit"]] if state else [])
    # Written now as well, so that an interrupted first invocation keeps its machine and
    # commit. (Its wall time is lost: the total then undercounts the runs it finished.)
    clock_file.write_text(
        json.dumps({"wall_s": prior, "machine": machine, "resumed_at_commits": resumed_at})
    )
    t0 = time.time()
    results = run_suite(args, out, work, log)
    wall = prior + time.time() - t0
    clock_file.write_text(
        json.dumps({"wall_s": wall, "machine": machine, "resumed_at_commits": resumed_at})
    )
    results.update(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        wall_s=wall,
        resumed_at_commits=resumed_at,
        resumed=bool(state),
        machine=machine,
        command="python benchmarks/suite.py "
        + " ".join(a for a in (argv if argv is not None else sys.argv[1:])),
    )
    json_file.write_text(json.dumps(results, indent=1, default=str))
    md = render(results, out)
    log(f"wrote {json_file} and {md} in {_fmt_duration(wall)}")
    return results


if __name__ == "__main__":
    main()
