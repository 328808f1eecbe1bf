"""
The suite's runs: ``train_net.py`` in a subprocess per (config, seed), several at a time, each
resumable through its result file; the per-component speed scripts; what is read back from a
run (final COCO metrics, AP curve, iteration times, the samplers' training scalars, peak RSS);
the machine description stored with each result.
"""

import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import error_profile
from .regimes import COCO_TINY, HERE, METRICS, REPO
from .store import write_json

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


@dataclass
class Job:
    """
    One training run. ``kind``: "method" (a regime's config), "control" (one setting changed,
    --controls) or "coco_tiny" (the pipeline check on real images). ``overrides`` are the yacs
    overrides after the config (schedule, data), ``extra_args`` the train_net.py arguments before
    it (dataset registration). ``gt_file``: the test set's COCO json for the error profile of the
    final detections (a callable of the run folder; None: no error profile).
    """

    kind: str
    key: str
    config: str  # under configs/
    seed: int
    run_dir: Path  # the run's outputs (checkpoints, logs, metrics.json): an ignored folder
    result_file: Path  # the run's result: a tracked file
    overrides: list
    extra_args: list = field(default_factory=list)
    test_dataset: str = ""
    gt_file: Optional[object] = None
    settings: dict = field(default_factory=dict)  # stored with the result (regime, schedule)
    label: str = ""  # "<regime> <config> seed <k>", for logs and commit messages
    # The iterations a finished run of this job has trained (None: not checked): a result file
    # with others was made with another schedule, e.g. before its config's schedule changed.
    iterations: Optional[int] = None


def relative_to_repo(arg):
    """A command-line argument with the repository's path replaced by a relative one."""
    s = str(arg)
    root = str(REPO) + os.sep
    return s[len(root) :] if s.startswith(root) else s


def _check_stored(result, job):
    """
    Exit unless the stored ``result`` was produced by ``job``: the same config, overrides and
    extra arguments, and (where the job says) as many training iterations, which a config-only
    schedule change would otherwise leave unnoticed. A diverged run stopped early: its
    iterations are not checked.
    """
    mine = dict(
        config=job.config,
        overrides=[relative_to_repo(x) for x in job.overrides],
        extra_args=[relative_to_repo(x) for x in job.extra_args],
    )
    stored = {k: result.get("settings", {}).get(k) for k in mine}
    if stored != mine:
        raise SystemExit(
            f"suite.py: {job.result_file} was produced with other settings than this "
            f"invocation's:\n  stored: {stored}\n  now:    {mine}\n"
            "Delete it (and its regime's other result files) to rerun with these settings, "
            "or pass another --results-dir."
        )
    trained = result.get("iterations")
    if job.iterations and result.get("status") != "diverged" and trained != job.iterations:
        raise SystemExit(
            f"suite.py: {job.result_file} trained {trained} iterations, this invocation's "
            f"schedule has {job.iterations} (its config's schedule changed?). Delete it to "
            "rerun it, or pass another --results-dir."
        )


def run_train(job, threads, log, machine, keep_checkpoints=False, on_result=None):
    """
    Train and evaluate ``job`` in a subprocess, unless its result file exists (then the stored
    result is returned, after checking it was produced with the same config and overrides).

    The result file is written once the run has finished (atomically: an interrupted suite
    never leaves a partial one), with everything the report needs: final metrics, AP curve,
    iteration times, training scalars, error profile, wall time, peak RSS, machine and commit.
    The run's folder (``job.run_dir``) is started afresh when it exists without a result: same
    seed, same result. Checkpoints are deleted unless ``keep_checkpoints``.

    Args:
        on_result (callable): called as ``on_result(result_file, label)`` after a new result
            file is written (``--commit``).

    Returns:
        dict: the run's result.
    """
    if job.result_file.is_file():
        result = json.loads(job.result_file.read_text())
        _check_stored(result, job)
        log(f"  skip {job.label} (done: {relative_to_repo(job.result_file)})")
        return result
    if job.run_dir.exists():  # an interrupted run: start it over (same seed and code: same result)
        shutil.rmtree(job.run_dir)
    job.run_dir.mkdir(parents=True)
    cmd = [
        sys.executable,
        str(REPO / "train_net.py"),
        *job.extra_args,
        "--config-file",
        str(REPO / "configs" / job.config),
        "SEED",
        job.seed,
        "MODEL.DEVICE",
        "cpu",
        "OUTPUT_DIR",
        str(job.run_dir),
        *job.overrides,
    ]
    cmd = [str(c) for c in cmd]
    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1"
    )
    log(f"  run  {job.label} in {job.run_dir}")
    t0 = time.time()
    log_path = job.run_dir / "log.txt"
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT)
        # wait4: this child's own rusage, so ru_maxrss is its peak RSS (KiB on Linux; the
        # data-loader workers it reaped count as well, as their own maximum).
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - t0
    log_text = log_path.read_text()
    diverged = diverged_in(proc.returncode, log_text)
    if proc.returncode != 0 and not diverged:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{log_text[-4000:]}")
    # A run that diverged is a result, not a crash of the suite: it is recorded and reported
    # as such, with no metrics.
    result = parse_metrics(job.run_dir / "metrics.json", allow_no_eval=diverged)
    if diverged:
        result["status"] = "diverged"
        log(f"  DIVERGED {job.label} (see {log_path})")
    if job.gt_file is not None:
        dets = job.run_dir / "inference" / job.test_dataset / "coco_instances_results.json"
        result["errors"] = error_profile(dets, job.gt_file(job.run_dir))
    result.update(
        method=job.key,
        kind=job.kind,
        config=job.config,
        seed=job.seed,
        wall_s=wall,
        peak_rss_mb=rusage.ru_maxrss / 1024.0,
        finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=machine,
        settings=dict(
            job.settings,
            config=job.config,
            overrides=[relative_to_repo(x) for x in job.overrides],
            extra_args=[relative_to_repo(x) for x in job.extra_args],
            threads_per_run=threads,
        ),
        command=[relative_to_repo(c) for c in cmd[1:]],
    )
    write_json(job.result_file, result)
    if not keep_checkpoints:  # tens of MB per run, and a finished run is never resumed
        for f in job.run_dir.glob("*.pth"):
            f.unlink()
    log(f"  done {job.label} in {wall / 60:.1f} min: AP {result['metrics'].get('AP')}")
    if on_result is not None:
        on_result(job.result_file, job.label)
    return result


# How a training run's divergence shows in its log: Detectron2's trainer raises
# FloatingPointError on a non-finite loss; a Cascade R-CNN whose boxes went non-finite in one
# stage fails before that, in the next stage's Boxes.clip assertion.
DIVERGENCE_MARKERS = ("FloatingPointError", "Box tensor contains infinite or NaN!")


def diverged_in(returncode, log_text):
    """Whether a training run that exited with ``returncode`` diverged, rather than crashed:
    a nonzero exit whose log holds one of ``DIVERGENCE_MARKERS``."""
    return returncode != 0 and any(m in log_text for m in DIVERGENCE_MARKERS)


def run_all(jobs, parallel, run, side=()):
    """
    ``run(job)`` for every job, ``parallel`` at a time, started in order; the callables ``side``
    are submitted to the same pool first (the speed scripts of a --quick suite). A failing run
    raises once the runs already queued have finished (each of them keeps its result file).

    Returns:
        (dict, list): the runs' results by run folder, the results of ``side``.
    """
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        side_futures = [pool.submit(f) for f in side]
        done = dict(pool.map(lambda job: (job.run_dir, run(job)), jobs))
        return done, [f.result() for f in side_futures]


def parse_metrics(path, allow_no_eval=False):
    """Final COCO metrics, AP-vs-iteration points and iteration times from metrics.json."""
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
        # Every logged window: [iteration, median s / iteration over the window].
        "iter_times_s": [[r["iteration"], round(r["time"], 4)] for r in train],
        "iterations": max((r.get("iteration", 0) for r in records), default=0),
        "diagnostics": {
            k: statistics.median(vs)
            for k in DIAGNOSTICS
            if (vs := [r[k] for r in records if isinstance(r.get(k), (int, float))])
        },
    }


def _num(x):
    """COCOeval writes NaN for an empty area range; JSON wants null."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return float(x)


def run_bench(name, out_file, quick, threads, log, on_result=None, label=None):
    """
    One per-component speed script (``benchmarks/<name>.py --json``), unless ``out_file``
    exists; ``on_result(out_file, label)`` after it is written, as for ``run_train``.
    """
    if out_file.is_file():
        log(f"  skip {name} (done)")
        return json.loads(out_file.read_text())
    part = Path(str(out_file) + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE / f"{name}.py"), "--json", str(part), "--threads", str(threads)]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    log(f"  run  {name}")
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    data = json.loads(part.read_text())
    data["_wall_s"] = time.time() - t0
    data["_stdout"] = proc.stdout
    write_json(out_file, data)
    part.unlink()
    if on_result is not None:
        on_result(out_file, label or name)
    return data


# ---------------------------------------------------------------------------------------------
# Data a run needs


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


def quick_voc_split(voc_dir, folder, names, sizes=(("train", 16), ("val", 8))):
    """
    A VOC-format folder for --quick: links to ``voc_dir``'s images and annotations, and split
    files of the first images of its splits (16 of train, 8 of val by default), so a smoke run
    checks and evaluates a handful of images.

    Returns:
        list: train_net.py's ``--voc-dataset NAME DIR SPLIT`` arguments, one per split, named
        ``names`` (train first).
    """
    folder = Path(folder)
    (folder / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for sub in ("Annotations", "JPEGImages"):
        link = folder / sub
        if not link.exists():
            link.symlink_to(Path(voc_dir) / sub, target_is_directory=True)
    args = []
    for name, (split, n) in zip(names, sizes):
        ids = (Path(voc_dir) / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:n]
        (folder / "ImageSets" / "Main" / f"quick_{split}.txt").write_text("\n".join(ids) + "\n")
        args += ["--voc-dataset", name, folder, f"quick_{split}"]
    return args


def num_classes_opts(family, n):
    key = "MODEL.ROI_HEADS.NUM_CLASSES" if family == "rcnn" else "MODEL.RETINANET.NUM_CLASSES"
    return [key, n]


# ---------------------------------------------------------------------------------------------
# Machine


def machine_description():
    """CPU, cores, memory, platform, Python / torch / Detectron2 versions, git commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    import detectron2
    import torch

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gb": round(mem_gb, 1) if mem_gb else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
    }


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def git(*args, cwd=REPO):
    """``git args`` in ``cwd``: its stdout, stripped ("" when git is missing)."""
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""
