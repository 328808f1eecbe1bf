#!/usr/bin/env python
"""
The benchmark suite (`make bench`): accuracy and speed of every method against its baseline,
in three regimes (``--regime``; definitions in suite_lib/regimes.py):

- ``bccd`` (default): ImageNet-pretrained EfficientNet-Lite0-FPN detectors on BCCD
  (configs/BCCD/), the configs' own 600-iteration schedule, evaluated every 100 iterations,
  with the opt-in controls (--controls: why OHEM is behind; the fine-tuning ones start from
  the baseline's final weights, kept by --keep-checkpoints);
- ``synthetic-pretrained``: the same detectors on the synthetic dataset
  (configs/Synthetic/*_effnetlite0_FPN*);
- ``synthetic-scratch``: TinyNet-FPN from scratch on the synthetic dataset, 400 iterations, with
  the opt-in controls (--controls), one coco_tiny row per method (when
  ../shared/data/coco_tiny exists) and the per-component speed scripts.

Each regime trains its 7 configs (Faster R-CNN with random sampling vs OHEM paper / OHEM
MMDetection / IoU-balanced; RetinaNet vs RetinaNet with ATSS assignment vs the ATSS detector)
with ``train_net.py`` in subprocesses, once per seed, same schedule, data and evaluation for
every config, and reports COCO AP/AP50/AP75/APs/APm/APl (mean ± std over seeds, Δ against the
method's baseline paired by seed), AP-vs-iteration curves, what the samplers did, an error
profile of the final detections, and the iteration time of every config with its ratio to the
baseline.

Results: each finished run writes one small JSON file, benchmarks/results/<regime>/<config>/
seed<k>.json (tracked; --results-dir); a run whose file exists is not run again, so an
interrupted suite resumes on any machine from what is committed. ``--commit`` commits each
result file as it is written. The runs' big outputs (checkpoints, logs, metrics.json) stay in
--work-dir (default output/bench/<regime>, ignored).

Outputs, under --out (default docs/; with --quick a temporary folder):
    benchmarks.md                   the report, one section per regime (BCCD first)
    benchmarks_bccd.json            a regime's results, aggregated from its result files
    benchmarks_synthetic_pretrained.json
    benchmarks.json                 the from-scratch regime's
    images/benchmarks_*.png         AP vs iteration, one plot per regime and detector family

    python benchmarks/suite.py                                   # BCCD (`make bench`)
    python benchmarks/suite.py --regime synthetic-scratch --controls
    python benchmarks/suite.py --methods faster_rcnn --keep-checkpoints  # then:
    python benchmarks/suite.py --controls                        # BCCD's controls
    python benchmarks/suite.py --commit                          # commit each result file
    python benchmarks/suite.py --quick --regime bccd --out /tmp/b  # 2 iterations, 2 configs
    python benchmarks/suite.py --render-only                     # re-render docs/ from results
"""

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

from suite_lib import markdown, runner, store
from suite_lib.regimes import BENCHES, DEFAULT_REGIME, REGIMES, REPO, SUITE_JOBS, schedule_opts


def log(msg):
    # One write per line: runs side by side log from several threads.
    sys.stdout.write(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {msg}\n")
    sys.stdout.flush()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--regime",
        choices=list(REGIMES),
        default=DEFAULT_REGIME,
        help=f"which regime to run (default {DEFAULT_REGIME}); the report shows every regime",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 seed, 2 iterations, a few images, the regime's --quick configs "
        "(2; synthetic-scratch: all 7), bench scripts with --quick; output to a temporary "
        "folder unless --out is given, results under OUT/results",
    )
    parser.add_argument("--out", help="folder for the report, the JSONs and images/ (docs/)")
    parser.add_argument(
        "--work-dir", help="the runs' outputs (default output/bench/REGIME; quick: OUT/runs/REGIME)"
    )
    parser.add_argument(
        "--results-dir",
        help="the result files (default benchmarks/results, tracked; quick: OUT/results)",
    )
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per config (default 3; quick 1)")
    parser.add_argument(
        "--iters",
        type=int,
        help="iterations of every run (default: each config's own, bccd 600 for the R-CNN "
        "configs and 1200 for the dense ones, synthetic-scratch 400); each config's schedule "
        "is rescaled to keep its shape",
    )
    parser.add_argument(
        "--eval-period", type=int, help="evaluate every N iterations for the AP curves (100)"
    )
    parser.add_argument("--methods", nargs="+", help="subset of the regime's method keys")
    parser.add_argument(
        "--jobs", type=int, default=None, help=f"training runs at a time (default {SUITE_JOBS})"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (usable cores // jobs)"
    )
    parser.add_argument(
        "--commit",
        action="store_true",
        help="git add + git commit each result file as soon as its run has finished "
        '("Benchmark result: <regime> <config> seed <k>"; nothing else is committed)',
    )
    parser.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep each run's model_final.pth (deleted by default)",
    )
    scratch = parser.add_argument_group("synthetic-scratch only")
    scratch.add_argument("--no-coco", action="store_true", help="skip the coco_tiny rows")
    scratch.add_argument("--coco", action="store_true", help="coco_tiny rows also with --quick")
    scratch.add_argument("--coco-iters", type=int, help="iterations of a coco_tiny run (100)")
    scratch.add_argument("--no-speed", action="store_true", help="skip the bench_*.py scripts")
    parser.add_argument(
        "--extra",
        action="store_true",
        help="run the regime's opt-in methods instead of its default ones (bccd: FCOS, FCOS + "
        "ATSS, Libra R-CNN and its sampler + BFP step, Cascade R-CNN with each sampler); "
        "those compared with a default method (Libra R-CNN vs Faster R-CNN) pair with its runs",
    )
    controls = parser.add_argument_group("bccd and synthetic-scratch only")
    controls.add_argument(
        "--controls",
        action="store_true",
        help="also run the regime's control runs (a setting changed, to explain a result); "
        "bccd's fine-tuning controls start from the faster_rcnn runs' final weights of the "
        "same seed: run those with --keep-checkpoints (same --work-dir) first or in the same "
        "invocation",
    )
    controls.add_argument(
        "--control-seeds", type=int, default=1, help="seeds 0..N-1 per control run (default 1)"
    )
    controls.add_argument(
        "--control-keys",
        nargs="+",
        help="with --controls: only these control runs (keys of the regime's controls)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="re-render the report from the result files (and the regimes' JSONs in OUT)",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="with --render-only: OUT/benchmarks.md of --regime alone, in the one-regime layout "
        "of the suite before it had regimes (the from-scratch report as committed with its JSON)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    regime = REGIMES[args.regime]
    if args.out:
        out = Path(args.out).resolve()
    elif args.quick and not args.render_only:
        out = Path(tempfile.mkdtemp(prefix="d2s_bench_quick_"))
    else:
        out = REPO / "docs"
    out.mkdir(parents=True, exist_ok=True)
    if args.results_dir:
        results_dir = Path(args.results_dir).resolve()
    else:
        results_dir = out / "results" if args.quick else store.RESULTS_DIR

    if args.render_only:
        if args.standalone:
            results = store.regime_results(regime, results_dir, out, write=False)
            if results is None:
                raise SystemExit(f"suite.py: no results of {regime.name} in {results_dir} or {out}")
            print(f"rendered {markdown.render_standalone(results, regime, out)}")
            return results
        return render(out, results_dir, only=[regime.name] if args.quick else None)

    if not regime.available():
        missing = [str(p) for p in regime.needs if not Path(p).exists()]
        raise SystemExit(
            f"suite.py: regime {regime.name} needs {', '.join(missing)} (not found); see "
            "docs/datasets.md, or choose another --regime"
        )
    committer = None
    if args.commit:
        if args.quick:
            raise SystemExit("suite.py: --commit with --quick: a smoke test's results are not kept")
        committer = store.Committer(REPO, log)
        committer.check(results_dir)
    if args.jobs is None:
        args.jobs = SUITE_JOBS
    if args.threads is None:
        args.threads = max(1, runner.usable_cores() // args.jobs)
    work = (
        Path(args.work_dir).resolve()
        if args.work_dir
        else (out / "runs" / regime.name if args.quick else REPO / "output" / "bench" / regime.name)
    )
    work.mkdir(parents=True, exist_ok=True)
    suite_command = "python benchmarks/suite.py " + " ".join(argv)

    jobs, later, benches = plan(regime, args, work, results_dir, suite_command.strip())
    machine = runner.machine_description()
    log(
        f"{regime.name}: {len(jobs) + len(later)} runs, {args.jobs} at a time, work dir {work}, "
        f"results in {results_dir / regime.name}"
    )

    def run(job):
        return runner.run_train(
            job, args.threads, log, machine, args.keep_checkpoints, on_result=committer
        )

    def bench(name, quick):
        return runner.run_bench(
            name,
            store.speed_file(results_dir, regime.name, name),
            quick,
            args.threads,
            log,
            on_result=committer,
            label=f"{regime.name} {name}",
        )

    # Nothing is timed for real in --quick: the speed scripts share the pool with the runs.
    side = [lambda name=name: bench(name, True) for name in benches] if args.quick else []
    runner.run_all(jobs, args.jobs, run, side)
    if later:  # the controls that start from a run above's final weights
        for j in later:
            check_weights(j, regime, work)
        runner.run_all(later, args.jobs, run)
    if benches and not args.quick:
        log("speed suite")  # alone on the machine, after the training runs: these are timings
        for name in benches:
            bench(name, False)
    return render(out, results_dir, only=[regime.name] if args.quick else None)


def plan(regime, args, work, results_dir, suite_command):
    """
    The training runs of this invocation (seed-major), the runs to start once those have
    finished (the controls that start from one of their final weights, "weights_from"), and
    the speed scripts to run.
    """
    keys = [m.key for m in regime.all_methods]
    if args.extra and not regime.extra_methods:
        raise SystemExit(f"suite.py: --extra: regime {regime.name} has no opt-in methods")
    if args.methods:
        unknown = set(args.methods) - set(keys)
        if unknown:
            raise SystemExit(
                f"suite.py: unknown --methods {sorted(unknown)}; {regime.name}: {keys}"
            )
        chosen = [m for m in regime.all_methods if m.key in args.methods]
    elif args.quick:
        chosen = [m for m in regime.methods if m.key in regime.quick_methods]
    else:
        chosen = list(regime.methods)
    if args.extra and not args.methods:
        # Only the opt-in methods: their baselines of the default set are taken from its runs.
        chosen = list(regime.extra_methods)
    quick = args.quick
    iters = args.iters if args.iters is not None else (2 if quick else regime.iters)
    eval_period = (
        args.eval_period if args.eval_period is not None else (0 if quick else regime.eval_period)
    )
    seeds = list(range(args.seeds if args.seeds is not None else (1 if quick else regime.seeds)))
    train_ds, test_ds = regime.train_dataset, regime.test_dataset
    schedule = schedule_opts(regime.schedule, iters, quick)
    # Every run's overrides but the schedule (the controls with their own schedule add theirs).
    common = ["TEST.EVAL_PERIOD", eval_period]
    extra = []
    if quick:
        train_ds, test_ds = regime.quick_train, regime.quick_test
        if regime.voc_dir is not None:
            extra = runner.quick_voc_split(regime.voc_dir, work / "quick_data", (train_ds, test_ds))
        common += [
            "DATASETS.TRAIN",
            f'("{train_ds}",)',
            "DATASETS.TEST",
            f'("{test_ds}",)',
            "DATALOADER.NUM_WORKERS",
            0,
            "SOLVER.IMS_PER_BATCH",
            2,
        ]
    common += ["SOLVER.CHECKPOINT_PERIOD", 10**7]  # only model_final: runs restart, not resume
    # The order of the overrides is part of a result file's settings: keep it.
    common, rest = schedule + common, common
    settings = dict(
        regime=regime.name,
        quick=quick,
        iters=iters,
        eval_period=eval_period,
        seeds=seeds,
        methods=[m.key for m in chosen],
        train_dataset=train_ds,
        test_dataset=test_ds,
        parallel_runs=args.jobs,
        suite_command=suite_command,
    )
    gt_file = _gt_file(regime, test_ds)

    def job(kind, key, config, name, seed, overrides, extra_args, folder, gt=None, run_iters=None):
        return runner.Job(
            kind=kind,
            key=key,
            config=config,
            seed=seed,
            run_dir=work / folder / name / f"seed{seed}",  # folder "": a method's run
            result_file=store.result_file(results_dir, regime.name, kind, name, seed),
            overrides=overrides,
            extra_args=extra_args,
            test_dataset=test_ds,
            gt_file=gt,
            settings=settings if run_iters is None else dict(settings, iters=run_iters),
            label=f"{regime.name} {folder + '/' if folder else ''}{name} seed {seed}",
            iterations=run_iters,
        )

    def family_schedule(family):
        """
        (schedule overrides, iterations) of a run of ``family`` when its configs have a
        schedule of their own (``regime.family_schedules``): that schedule ([]: the config's
        as it is), or its shape rescaled to --iters; None otherwise (and with --quick): the
        regime's ``schedule`` applies, as in ``common``.
        """
        if quick or family not in regime.family_schedules:
            return None
        own = regime.schedule_of(family)
        n = own.iters if args.iters is None else args.iters
        return schedule_opts(own, n, quick), n

    def method_job(m, seed):
        """A method's run, on its family's schedule."""
        fam = family_schedule(m.family)
        if fam is None:
            return job(
                "method", m.key, m.config, m.run_name, seed, common, extra, "", gt_file, iters
            )
        opts, n = fam
        return job("method", m.key, m.config, m.run_name, seed, opts + rest, extra, "", gt_file, n)

    # Seed-major: every method's seed-0 run comes before any seed-1 run, so the runs sharing
    # the machine at any time are a mix of methods, not one method's seeds side by side.
    jobs = [method_job(m, s) for s in seeds for m in chosen]
    # --quick leaves coco_tiny out unless --coco asks for it (7 more runs: ~2 min on 2 cores).
    use_coco = (
        regime.coco_tiny
        and (args.coco or not (args.no_coco or quick))
        and runner.coco_tiny_available()
    )
    if use_coco:
        coco_iters = args.coco_iters if args.coco_iters is not None else (2 if quick else 100)
        # From scratch on 80 real classes: the synthetic schedule's shape (warm-up, decays)
        # rescaled, and gradient clipping (norm 5); without them the Faster R-CNN rows
        # diverged at iteration ~60 (NaN boxes) at LR 0.02. The same for every method.
        coco_opts = schedule_opts(regime.schedule, coco_iters, quick) + [
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
            0 if quick else 1,
        ]
        if quick:
            coco_opts += ["SOLVER.IMS_PER_BATCH", 2]
        jobs += [
            job(
                "coco_tiny",
                m.key,
                m.config,
                m.run_name,
                0,
                coco_opts + runner.num_classes_opts(m.family, 80),
                runner.coco_tiny_args(),
                "coco_tiny",
            )
            for m in chosen
        ]
    later = []
    if args.control_keys and not args.controls:
        raise SystemExit("suite.py: --control-keys selects among --controls: add --controls")
    if args.controls:
        if not regime.controls:
            raise SystemExit(f"suite.py: --controls: regime {regime.name} has no control runs")
        control_keys = [c["key"] for c in regime.controls]
        unknown = set(args.control_keys or ()) - set(control_keys)
        if unknown:
            raise SystemExit(
                f"suite.py: unknown --control-keys {sorted(unknown)}; {regime.name}: {control_keys}"
            )
        for c in regime.controls:
            if args.control_keys and c["key"] not in args.control_keys:
                continue
            fam = None if c.get("own_schedule") else family_schedule(c.get("family"))
            for s in range(args.control_seeds):
                if c.get("own_schedule"):
                    # Its opts hold its schedule: not rescaled by --iters; --quick still cuts it.
                    opts = rest + c["opts"] + (schedule if quick else [])
                elif fam is not None:  # its family's configs' own schedule
                    opts = fam[0] + rest + c["opts"]
                else:
                    opts = common + c["opts"]
                weights = control_weights(c, regime, work, s)
                if weights is not None:
                    opts = opts + ["MODEL.WEIGHTS", weights]
                j = job(
                    "controls",
                    c["key"],
                    c["config"],
                    c["key"],
                    s,
                    opts,
                    extra,
                    "controls",
                    run_iters=None if fam is None else fam[1],
                )
                if weights is None:
                    jobs.append(j)
                    continue
                later.append(j)
                # Its checkpoint comes from a run of this invocation (checked again before
                # the control starts), or must be there now.
                produced = args.keep_checkpoints and any(
                    x.kind == "method"
                    and x.key == c["weights_from"]
                    and x.seed == s
                    and not x.result_file.is_file()
                    for x in jobs
                )
                if not produced:
                    check_weights(j, regime, work)
    benches = BENCHES if regime.speed_benches and not args.no_speed else []
    return jobs, later, benches


def control_weights(control, regime, work, seed):
    """
    The checkpoint a control with ``"weights_from"`` starts from: the final weights of that
    method's run of ``seed`` in the work dir (``work/<its config>/seed<k>/model_final.pth``,
    kept by --keep-checkpoints); None for a control without it.
    """
    key = control.get("weights_from")
    if not key:
        return None
    return Path(work) / regime.method(key).run_name / f"seed{seed}" / "model_final.pth"


def check_weights(job, regime, work):
    """
    Refuse a "weights_from" control ``job`` whose checkpoint is missing, unless the control has
    its result file already (then it is not run again).
    """
    control = next(c for c in regime.controls if c["key"] == job.key)
    path = control_weights(control, regime, work, job.seed)
    if path is None or job.result_file.is_file() or path.is_file():
        return
    method = regime.method(control["weights_from"])
    # result_file: RESULTS/<regime>/controls/<key>/seed<k>.json
    method_result = store.result_file(
        job.result_file.parents[3], regime.name, "method", method.run_name, job.seed
    )
    raise SystemExit(
        f"suite.py: control {job.key} (seed {job.seed}) starts from the final weights of the "
        f"{regime.name} {method.key} run of seed {job.seed}, {path}, which does not exist. Run "
        f"the {regime.name} methods with --keep-checkpoints first (same --work-dir), e.g. "
        f"`python benchmarks/suite.py --regime {regime.name} --methods {method.key} "
        f"--seeds {job.seed + 1} --keep-checkpoints`, or in this invocation (add "
        "--keep-checkpoints). Runs keep no "
        f"checkpoint by default: if {method_result} exists, that run was done without one; "
        "delete it to train it again (same seed and code: same result)."
    )


def _gt_file(regime, test_ds):
    """The test set's COCO json, for the error profile: a function of the run's folder."""
    if regime.voc_dir is not None:
        # A VOC-format dataset: the evaluator converts it into the run's inference folder.
        return lambda run_dir: run_dir / "inference" / test_ds / f"{test_ds}_coco_format.json"
    from d2_sampling.data.synthetic import synthetic_paths

    path = synthetic_paths(test_ds)[0]
    return lambda run_dir: path


def render(out, results_dir, only=None):
    """
    Aggregate every regime's result files (written next to the report as its JSON) and write
    the report, and for the committed report (docs/) the README's summary table; ``only``:
    these regimes' sections alone (--quick).

    Returns:
        dict: regime name -> its results (None: not run yet).
    """
    names = only or list(REGIMES)
    sections = {n: store.regime_results(REGIMES[n], results_dir, out) for n in names}
    path = markdown.render_report(sections, out, names)
    for n, res in sections.items():
        if res is not None and res.get("source") == "result files":
            log(f"wrote {out / REGIMES[n].json_name}")
    log(f"wrote {path}")
    if only is None and out == REPO / "docs":  # the committed report: the README's summary too
        readme = REPO / "README.md"
        if markdown.write_summary(readme, markdown.render_summary(sections, names)):
            log(f"wrote {readme} (its benchmark summary)")
    return sections


if __name__ == "__main__":
    main()
