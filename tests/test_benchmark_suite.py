"""
The benchmark suite (`benchmarks/suite.py`): its entry point runs end to end in every regime
(`--quick`), so it does not rot; it resumes from its result files and renders from them alone;
`--commit` commits a result file and nothing else; the error analysis classifies detections
exactly. Structure only, never accuracy.
"""

import dataclasses
import json
import shutil
import subprocess

import pytest

from helpers import REPO, bccd_available, run_script

# The suite's method keys and labels, written out: a method dropped from the suite fails here.
METHODS = {
    "faster_rcnn": "Faster R-CNN, random sampling",
    "ohem": "OHEM (paper)",
    "ohem_mmdet": "OHEM (MMDetection)",
    "iou_balanced": "IoU-balanced sampling",
    "retinanet": "RetinaNet",
    "retinanet_atss": "RetinaNet + ATSS assignment",
    "atss": "ATSS",
}
METRIC_KEYS = {"AP", "AP50", "AP75", "APs", "APm", "APl"}
RUN_KEYS = {
    "metrics",
    "ap_curve",
    "iter_time_s",
    "iter_times_s",
    "iterations",
    "diagnostics",
    "errors",
    "wall_s",
    "peak_rss_mb",
    "machine",
    "settings",
    "finished",
    "seed",
    "method",
    "config",
}


def _suite_lib():
    """benchmarks/suite_lib, imported as suite.py imports it (benchmarks/ is on pythonpath)."""
    import suite_lib.errors
    import suite_lib.markdown
    import suite_lib.plots
    import suite_lib.regimes
    import suite_lib.runner
    import suite_lib.stats
    import suite_lib.store

    return suite_lib


def _table_rows(md):
    return [line for line in md.splitlines() if line.startswith("| ")]


def _check_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


# ---------------------------------------------------------------------------------------------
# End to end, --quick


@pytest.mark.slow
def test_suite_quick_synthetic_scratch(tmp_path):
    """The from-scratch regime: every method, the controls and the speed scripts."""
    out = tmp_path / "bench"
    args = ("--quick", "--regime", "synthetic-scratch", "--controls", "--out", out)
    run_script("benchmarks/suite.py", *args, timeout=900)

    # One result file per run, in the results folder (quick: OUT/results).
    lib = _suite_lib()
    regime = lib.regimes.REGIMES["synthetic-scratch"]
    for m in regime.methods:
        run = json.loads((out / "results" / regime.name / m.run_name / "seed0.json").read_text())
        assert RUN_KEYS <= set(run), set(RUN_KEYS) - set(run)
        assert run["settings"]["regime"] == regime.name and run["settings"]["quick"]

    results = json.loads((out / "benchmarks.json").read_text())
    assert results["settings"]["quick"] and results["settings"]["iters"] == 2
    assert results["settings"]["train_dataset"] == "synthetic_mini_train"
    assert {m["key"] for m in results["methods"]} == set(METHODS)
    assert results["progress"] == {"done": 7, "planned": 7}
    for key in METHODS:
        (run,) = results["runs"][key]  # one seed
        assert run["iterations"] == 2 and len(run["ap_curve"]) >= 1
        assert set(run["metrics"]) == METRIC_KEYS
        assert run["peak_rss_mb"] > 0
        assert run["diagnostics"]["total_loss"] > 0
        assert run["errors"]["n"] > 0  # error profile of the final detections
    # Each sampler's own training scalars reach the results (what the "samplers did" table reads).
    runs = results["runs"]
    assert runs["ohem"][0]["diagnostics"]["roi_head/ohem_pool_size"] > 0
    iou_neg = runs["iou_balanced"][0]["diagnostics"]
    assert 0 <= iou_neg["roi_head/iou_balanced_neg_mean_iou"] < 0.5
    assert runs["atss"][0]["diagnostics"]["atss/num_pos_per_gt"] > 0
    assert "roi_head/ohem_pool_size" not in runs["faster_rcnn"][0]["diagnostics"]
    assert set(results["speed"]) == {"bench_atss", "bench_ohem", "bench_iou_balanced"}
    for k in ("cpu_model", "usable_cores", "torch", "detectron2"):
        assert results["machines"][0]["machine"][k]
    assert results["run_time_s"] > 0 and results["date"]

    md = (out / "benchmarks.md").read_text()
    assert "## Synthetic dataset, TinyNet-FPN from scratch" in md
    assert "## BCCD" not in md  # --quick: the section of the regime it ran, alone
    rows = _table_rows(md)
    for label in METHODS.values():
        # an accuracy row, a samplers row, an error-profile row and a training-speed row
        assert sum(line.startswith(f"| {label} |") for line in rows) >= 4, label
    # The opt-in controls ran, each compared with its suite run of the same seed.
    assert [c["key"] for c in results["controls"]] == ["faster_rcnn_64", "retinanet_gn"]
    for c in results["controls"]:
        (run,) = c["runs"]
        assert run["method"] == c["key"] and run["iterations"] == 2
        assert f"| {c['label']} |" in md
    for heading in ("What the samplers did", "What the final detections are", "Controls"):
        assert f"### {heading}" in md
    for fam in ("rcnn", "retinanet"):
        _check_png(out / "images" / f"benchmarks_{fam}_ap.png")
        assert f"images/benchmarks_{fam}_ap.png" in md

    # Resumable: a second invocation finds every result file and trains nothing.
    (out / "benchmarks.md").unlink()
    again = run_script("benchmarks/suite.py", *args, timeout=120)
    assert "  run  " not in again.stdout and "skip" in again.stdout
    assert (out / "benchmarks.md").read_text() == md
    assert json.loads((out / "benchmarks.json").read_text())["runs"] == results["runs"]


@pytest.mark.slow
@pytest.mark.parametrize("regime", ["bccd", "synthetic-pretrained"])
def test_suite_quick_pretrained(tmp_path, regime):
    """The pretrained regimes: 2 configs (one per detector family), 2 iterations, a few images."""
    if regime == "bccd" and not bccd_available():
        pytest.skip("BCCD not beside the checkout")
    lib = _suite_lib()
    spec = lib.regimes.REGIMES[regime]
    out = tmp_path / "bench"
    run_script("benchmarks/suite.py", "--quick", "--regime", regime, "--out", out, timeout=600)

    results = json.loads((out / spec.json_name).read_text())
    assert results["regime"] == regime and results["settings"]["quick"]
    assert results["settings"]["test_dataset"] == spec.quick_test
    quick = set(spec.quick_methods)
    assert len(quick) == 2 and {m["key"] for m in results["methods"]} == quick
    for m in spec.methods:
        result_file = out / "results" / regime / m.run_name / "seed0.json"
        assert result_file.is_file() == (m.key in quick), result_file
    for key in quick:
        (run,) = results["runs"][key]
        assert RUN_KEYS <= set(run)
        assert run["config"] == spec.method(key).config
        assert run["iterations"] == 2 and set(run["metrics"]) == METRIC_KEYS
        assert run["diagnostics"]["total_loss"] > 0
        # The error profile's ground truth: BCCD's converted by the evaluator, or synthetic's.
        assert run["errors"]["n"] > 0
    assert results["runs"]["atss"][0]["diagnostics"]["atss/num_pos_per_gt"] > 0

    md = (out / "benchmarks.md").read_text()
    assert f"## {spec.title}" in md and "**Quick run" in md
    rows = _table_rows(md)
    for key in quick:
        assert sum(line.startswith(f"| {METHODS[key]} |") for line in rows) >= 4, key
    for fam in ("rcnn", "retinanet"):
        png = out / "images" / f"{spec.image_prefix}{fam}_ap.png"
        _check_png(png)
        assert f"images/{png.name}" in md


@pytest.mark.slow
def test_suite_quick_bccd_controls(tmp_path):
    """
    BCCD's controls end to end, 2 iterations each: the fine-tuning ones refused without the
    baseline's checkpoint, then run after it in one invocation (--keep-checkpoints), starting
    from its model_final.pth.
    """
    if not bccd_available():
        pytest.skip("BCCD not beside the checkout")
    lib = _suite_lib()
    spec = lib.regimes.REGIMES["bccd"]
    out = tmp_path / "bench"
    args = ("--quick", "--regime", "bccd", "--methods", "faster_rcnn", "--controls", "--out", out)
    refused = run_script("benchmarks/suite.py", *args, timeout=300, check=False)
    assert refused.returncode != 0 and "--keep-checkpoints" in refused.stdout
    assert "faster_rcnn_effnetlite0_FPN/seed0/model_final.pth" in refused.stdout
    assert "  run  " not in refused.stdout  # refused before training anything

    log = run_script("benchmarks/suite.py", *args, "--keep-checkpoints", timeout=900).stdout
    ckpt = out / "runs" / "bccd" / "faster_rcnn_effnetlite0_FPN" / "seed0" / "model_final.pth"
    assert ckpt.is_file()
    # The runs without "weights_from" share the pool (their start order is racy); the
    # fine-tuning ones start only once the baseline is done.
    lines = log.splitlines()
    base = "bccd faster_rcnn_effnetlite0_FPN seed 0"
    base_done = [i for i, x in enumerate(lines) if f"  done {base} " in x]
    finetune = [i for i, x in enumerate(lines) if "  run  " in x and "finetune" in x]
    assert len(base_done) == 1 and finetune and min(finetune) > base_done[0], log
    results = json.loads((out / spec.json_name).read_text())
    assert [c["key"] for c in results["controls"]] == [c["key"] for c in spec.controls]
    for c in results["controls"]:
        (run,) = c["runs"]
        assert run["iterations"] == 2 and run["kind"] == "controls"
        cmd = run["command"]
        assert ("MODEL.WEIGHTS" in cmd) == bool(c.get("weights_from")), c["key"]
        if c.get("weights_from"):
            assert cmd[cmd.index("MODEL.WEIGHTS") + 1] == str(ckpt)
            assert cmd[cmd.index("SOLVER.BASE_LR") + 1] == "0.0001"
            run_log = out / "runs" / "bccd" / "controls" / c["key"] / "seed0" / "log.txt"
            assert f"Loading from {ckpt}" in run_log.read_text()
    md = (out / "benchmarks.md").read_text()
    assert "### Controls" in md and "## Against the papers" in md
    for c in spec.controls:
        assert f"| {c['label']} |" in md


# ---------------------------------------------------------------------------------------------
# Resuming and rendering from the result files (no training)


def _fake_result(regime, method, seed, ap, methods, seeds, **metrics):
    """A result file as run_train writes it, with made-up numbers (every metric ``ap`` unless
    given in ``metrics``)."""
    return {
        "metrics": {k: metrics.get(k, ap) for k in METRIC_KEYS},
        "ap_curve": [[100, ap / 2], [600, ap]],
        "iter_time_s": 2.5 + seed / 10,
        "data_time_s": 0.05,
        "iter_times_s": [[19, 2.6], [39, 2.5]],
        "iterations": 600,
        "diagnostics": {"total_loss": 1.0},
        "errors": {
            "tp": 0.5,
            "duplicate": 0.1,
            "wrong_class": 0.1,
            "localization": 0.2,
            "background": 0.1,
            "recall": 0.5,
            "n": 10,
        },
        "method": method.key,
        "kind": "method",
        "config": method.config,
        "seed": seed,
        "wall_s": 1800.0,
        "peak_rss_mb": 1000.0,
        "finished": f"2026-12-0{seed + 1}T00:00:00+00:00",
        "machine": {
            "cpu_model": "CPU",
            "cpu_count": 2,
            "usable_cores": 2,
            "memory_gb": 8.0,
            "platform": "Linux",
            "python": "3.10",
            "torch": "2.3.1",
            "detectron2": "0.7.2",
            "git_commit": "0123456789abcdef",
            "git_dirty": False,
        },
        "settings": {
            "regime": regime.name,
            "quick": False,
            "iters": 600,
            "eval_period": 100,
            "seeds": seeds,
            "methods": methods,
            "train_dataset": regime.train_dataset,
            "test_dataset": regime.test_dataset,
            "parallel_runs": 2,
            "suite_command": "python benchmarks/suite.py",
            "config": method.config,
            "overrides": ["TEST.EVAL_PERIOD", "100", "SOLVER.CHECKPOINT_PERIOD", "10000000"],
            "extra_args": [],
            "threads_per_run": 1,
        },
    }


def test_render_from_result_files_alone(tmp_path):
    """
    An interrupted BCCD suite: 3 of its 21 result files. --render-only aggregates them into
    docs' benchmarks_bccd.json and renders the section (done so far, the rest "not run yet",
    deltas paired by seed); a run whose file exists is skipped, one with other settings refused.
    """
    lib = _suite_lib()
    regime = lib.regimes.REGIMES["bccd"]
    results_dir, out = tmp_path / "results", tmp_path / "docs"
    keys = [m.key for m in regime.methods]
    done = [("faster_rcnn", 0, 60.0), ("faster_rcnn", 1, 62.0), ("ohem", 0, 58.0)]
    for key, seed, ap in done:
        m = regime.method(key)
        path = lib.store.result_file(results_dir, regime.name, "method", m.run_name, seed)
        result = _fake_result(regime, m, seed, ap, keys, [0, 1, 2])
        if key == "ohem":  # the same machine, another commit, with uncommitted changes
            result["machine"].update(git_commit="fedcba9876543210", git_dirty=True)
        lib.store.write_json(path, result)

    run_script(
        "benchmarks/suite.py",
        "--render-only",
        "--out",
        out,
        "--results-dir",
        results_dir,
        timeout=120,
    )
    agg = json.loads((out / "benchmarks_bccd.json").read_text())
    assert agg["source"] == "result files"
    md = (out / "benchmarks.md").read_text()
    # One line per machine as shown (the stored ones differ in their commit), the commits
    # with their runs, the one made with uncommitted changes named.
    assert md.count("- machine: CPU, 2 usable cores (2 online), 8.0 GB; Linux\n") == 1
    assert "; commits `0123456789` (2 runs), `fedcba9876` (1 run, with uncommitted changes)\n" in md
    # Their iteration times did not run side by side: the speed table says so.
    assert "**These runs were made at different times**" in md
    assert agg["progress"] == {"done": 3, "planned": 21}
    assert [len(agg["runs"][k]) for k in keys] == [2, 1, 0, 0, 0, 0, 0]
    titles = [line for line in md.splitlines() if line.startswith("## ")]
    assert titles[0] == "## Against the papers"  # the regimes side by side
    assert titles[1] == f"## {regime.title}"  # then BCCD first
    assert len(titles) == 4  # every regime has a section, run or not
    assert "**Incomplete: 3 of 21 runs done.**" in md
    # One seed has no spread: its numbers stand without a "± 0.0".
    assert "| OHEM (paper) (1 of 3 seeds) | 58.0 | 58.0 |" in md
    # Δ paired by seed: OHEM's seed 0 against the baseline's seed 0 only.
    assert "| -2.0 | -2.0 | -2.0 | not better (1 seed) |" in md
    # Runs at a time from their start and finish times: OHEM seed 0 and the baseline's seed 0
    # trained over the same half hour, its seed 1 a day later (--jobs says 2 per invocation).
    assert (
        "summed run time 1 h 30 min 0 s, trained within 1 h 0 min 0 s of wall-clock time: "
        "1.5 runs at a time on average, at most 2 (from the runs' start and finish times)\n"
    ) in md
    assert "1 thread(s) per run, `--jobs 2` per suite invocation\n" in md
    assert "| Faster R-CNN, random sampling (2 of 3 seeds) | 61.0 ± 1.4 |" in md
    assert "| IoU-balanced sampling | (not run yet) |" in md
    assert "How long the default suite takes" in md
    _check_png(out / "images" / "benchmarks_bccd_rcnn_ap.png")

    # Resume: the job of a run with a result file returns it without training.
    m = regime.method("faster_rcnn")
    job = lib.runner.Job(
        kind="method",
        key=m.key,
        config=m.config,
        seed=0,
        run_dir=tmp_path / "runs" / m.run_name / "seed0",
        result_file=lib.store.result_file(results_dir, regime.name, "method", m.run_name, 0),
        overrides=["TEST.EVAL_PERIOD", 100, "SOLVER.CHECKPOINT_PERIOD", 10**7],
        label="bccd faster_rcnn_effnetlite0_FPN seed 0",
    )
    logged = []
    result = lib.runner.run_train(job, 1, logged.append, machine={})
    assert result["metrics"]["AP"] == 60.0 and not (tmp_path / "runs").exists()
    assert logged and "skip" in logged[0]
    job.overrides = ["TEST.EVAL_PERIOD", 200, "SOLVER.CHECKPOINT_PERIOD", 10**7]
    with pytest.raises(SystemExit, match="other settings"):
        lib.runner.run_train(job, 1, logged.append, machine={})


def test_committed_scratch_section_renders_from_its_json(tmp_path):
    """
    The from-scratch regime's section of docs/benchmarks.md is what the suite renders from the
    committed docs/benchmarks.json (that regime predates the result files); rendered alone
    (--standalone), it is the one-regime report of the suite before regimes.
    """
    lib = _suite_lib()
    out = tmp_path / "docs"
    out.mkdir()
    shutil.copy(REPO / "docs" / "benchmarks.json", out)
    run_script(
        "benchmarks/suite.py",
        "--render-only",
        "--out",
        out,
        "--results-dir",
        tmp_path / "no_results",
        timeout=120,
    )
    md = (out / "benchmarks.md").read_text()
    heading = "## " + lib.regimes.REGIMES["synthetic-scratch"].title
    section = md[md.index(heading) :]
    assert "(results of commit `14c4a64f04`)" in section.splitlines()[0]
    assert "These runs were made at different times" not in section  # one invocation
    committed = (REPO / "docs" / "benchmarks.md").read_text()
    if heading in committed:
        assert committed[committed.index(heading) :] == section
    # Standalone: the old layout, headings one level up, the same tables.
    run_script(
        "benchmarks/suite.py",
        "--render-only",
        "--standalone",
        "--regime",
        "synthetic-scratch",
        "--out",
        out,
        "--results-dir",
        tmp_path / "no_results",
        timeout=120,
    )
    alone = (out / "benchmarks.md").read_text()
    assert alone.startswith(
        "# Benchmarks\n\nGenerated by `benchmarks/suite.py` (`make bench`) from"
    )
    body = alone[alone.index("\n- date: ") :]
    demoted = "\n".join(("#" + x if x.startswith("##") else x) for x in body.split("\n"))
    assert section.endswith(demoted)
    if heading not in committed:  # docs/benchmarks.md as the suite wrote it before regimes
        assert alone == committed


# docs/benchmarks.md as the suite wrote it before regimes (commit 1cc61b0), from the committed
# docs/benchmarks.json: what --render-only --standalone --regime synthetic-scratch must write.
LEGACY_REPORT_SHA256 = "d95228484bb075676590672fe0c4412e5f64606496b66ec5091a895185588b3b"


def test_concurrency_of_runs_from_their_times():
    """Runs at a time and the wall-clock time they trained in, from each run's finish time and
    wall time: two that overlap for 500 s count together; one that started 1 s before the
    previous one's finish stamp (its bookkeeping) does not; a run without times is ignored."""
    store = _suite_lib().store

    def run(end_s, wall_s):
        end = f"2026-12-07T00:{end_s // 60:02d}:{end_s % 60:02d}+00:00"
        return {"finished": end, "wall_s": float(wall_s)}

    runs = [run(1000, 1000), run(1500, 1000), run(2499, 1000), run(3500, 100), {"wall_s": 5.0}]
    assert store.concurrency(runs) == {"max_runs": 2, "busy_s": 2499.0 + 100.0}
    # Back to back: one at a time, busy the two walls.
    assert store.concurrency([run(100, 100), run(200, 100)]) == {"max_runs": 1, "busy_s": 200.0}
    assert store.concurrency([{"wall_s": 5.0}]) is None


def test_divergence_is_told_from_a_crash():
    """A nonzero exit is a divergence when the log says the loss (Detectron2's
    FloatingPointError) or a Cascade R-CNN stage's boxes (Boxes.clip's assertion) went
    non-finite; any other failure is a crash, and a clean exit is neither."""
    diverged_in = _suite_lib().runner.diverged_in
    loss = "FloatingPointError: Loss became infinite or NaN at iteration=119!"
    boxes = "AssertionError: Box tensor contains infinite or NaN!"
    assert diverged_in(1, f"Traceback ...\n{loss}\n")
    assert diverged_in(1, f"Traceback ...\n{boxes}\n")
    assert not diverged_in(1, "Traceback ...\nKeyError: 'bccd_train'\n")
    assert not diverged_in(0, loss)


def test_one_seed_has_no_spread():
    """A mean over one seed has no std (None, not 0.0): the tables print the value alone and
    the verdict says it is one seed; three equal values do have a std of 0."""
    lib = _suite_lib()
    assert lib.stats.mean_std([2.0]) == (2.0, None)
    assert lib.stats.mean_std([2.0, 2.0, 2.0]) == (2.0, 0.0)
    assert lib.stats.mean_std([None]) == (None, None)
    assert lib.stats.verdict((1.0, None)) == "better (1 seed)"
    assert lib.stats.verdict((-1.0, None)) == "not better (1 seed)"
    assert lib.stats.verdict((1.0, 0.5)) == "better"
    assert lib.markdown._pm((-2.0, None), signed=True) == "-2.0"
    assert lib.markdown._pm((61.0, 1.41)) == "61.0 ± 1.4"


def test_curve_titles_count_the_seeds_that_finished():
    """An AP-curve title gives the seeds behind its curves as finished (diverged runs not
    drawn), not as planned; where the family's methods differ, each legend entry gives its
    own."""
    seeds_text = _suite_lib().plots.seeds_text
    ms = [{"key": "a"}, {"key": "b"}, {"key": "c"}]
    ok, bad = {}, {"status": "diverged"}
    assert seeds_text(ms, {"a": [ok] * 3, "b": [ok] * 3}) == ("3 seeds", {})
    assert seeds_text(ms, {"a": [ok]}) == ("1 seed", {})
    assert seeds_text(ms, {}) == ("no runs", {})
    assert seeds_text(ms, {"a": [ok] * 3, "b": [ok], "c": []}) == (
        "1-3 seeds",
        {"a": " (3 seeds)", "b": " (1 seed)"},
    )
    # Diverged runs are not drawn: they do not count, and their method's legend says so.
    assert seeds_text(ms, {"a": [ok] * 3, "b": [ok, bad, bad], "c": [bad]}) == (
        "1-3 seeds",
        {
            "a": " (3 seeds)",
            "b": " (1 seed; 2 diverged, not drawn)",
            "c": " (0 seeds; 1 diverged, not drawn)",
        },
    )
    assert seeds_text(ms, {"a": [ok] * 3, "b": [ok, ok, bad]}) == (
        "2-3 seeds",
        {"a": " (3 seeds)", "b": " (2 seeds; 1 diverged, not drawn)"},
    )


def test_standalone_scratch_report_is_the_legacy_one_byte_for_byte(tmp_path):
    """The one-regime layout has no "Against the papers" table and no BCCD controls: the
    from-scratch report is the one committed before regimes, byte for byte."""
    import hashlib

    out = tmp_path / "docs"
    out.mkdir()
    shutil.copy(REPO / "docs" / "benchmarks.json", out)
    run_script(
        "benchmarks/suite.py",
        "--render-only",
        "--standalone",
        "--regime",
        "synthetic-scratch",
        "--out",
        out,
        "--results-dir",
        tmp_path / "no_results",
        timeout=120,
    )
    alone = (out / "benchmarks.md").read_bytes()
    assert b"Against the papers" not in alone
    assert hashlib.sha256(alone).hexdigest() == LEGACY_REPORT_SHA256


def _row(md, first_cell):
    """The cells of the table row whose first cell is ``first_cell``."""
    (line,) = [x for x in _table_rows(md) if x.startswith(f"| {first_cell} |")]
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_papers_table_from_result_files(tmp_path):
    """
    "Against the papers": the published Δ beside ours, paired by seed, per regime. BCCD from
    fake result files (a diverged run left out and named; "not run"; no paired seed),
    synthetic-pretrained not run, synthetic-scratch from its committed JSON.
    """
    lib = _suite_lib()
    import suite_lib.papers

    regime = lib.regimes.REGIMES["bccd"]
    results_dir, out = tmp_path / "results", tmp_path / "docs"
    out.mkdir()
    shutil.copy(REPO / "docs" / "benchmarks.json", out)
    keys = [m.key for m in regime.methods]

    def put(key, seed, ap, **metrics):
        m = regime.method(key)
        data = _fake_result(regime, m, seed, ap, keys, [0, 1, 2], **metrics)
        path = lib.store.result_file(results_dir, regime.name, "method", m.run_name, seed)
        lib.store.write_json(path, data)
        return path

    for seed, ap in enumerate([50.0, 52.0, 54.0]):
        put("faster_rcnn", seed, ap, AP75=ap - 10)
    # IoU-balanced: Δ AP +1, +2, 0 (mean 1.0, std 1.0); Δ AP75 +2 at every seed.
    for seed, ap in enumerate([51.0, 54.0, 54.0]):
        put("iou_balanced", seed, ap, AP75=[42.0, 44.0, 46.0][seed])
    # OHEM (paper): seed 0 diverged (its metrics: the last evaluation before, left out), seeds
    # 1 and 2 at -2 and -3 (mean -2.5, std 0.71).
    path = put("ohem", 0, 10.0)
    diverged = json.loads(path.read_text())
    diverged.update(status="diverged", iterations=119)
    lib.store.write_json(path, diverged)
    put("ohem", 1, 50.0)
    put("ohem", 2, 51.0)
    # RetinaNet seed 0 only, ATSS seed 1 only: both ran, no seed in common.
    put("retinanet", 0, 40.0)
    put("atss", 1, 45.0)
    # An opt-in method (--extra) against a default one: Libra R-CNN at +3 and +1 (seeds 0, 1).
    put("libra", 0, 53.0)
    put("libra", 1, 53.0)

    sections = {
        n: lib.store.regime_results(r, results_dir, out) for n, r in lib.regimes.REGIMES.items()
    }
    assert sections["synthetic-pretrained"] is None
    md = lib.markdown.render_report(sections, out).read_text()
    assert md.index("## Against the papers") < md.index(f"## {regime.title}")
    header = _row(md, "comparison")
    assert header[3:] == [
        "ours: BCCD, pretrained",
        "ours: synthetic, pretrained",
        "ours: synthetic, from scratch",
    ]
    labels = {m.key: m.label for m in regime.all_methods}

    def cells(method, baseline):
        row = _row(md, f"{labels[method]} vs {labels[baseline]}")
        return row[2:]  # published Δ, then ours in each regime

    assert cells("iou_balanced", "faster_rcnn") == [
        "AP +0.9, AP75 +1.6",
        "AP +1.0 ± 1.0, AP75 +2.0 ± 0.0 (3 seeds)",
        "not run",
        "AP +2.0 ± 0.8, AP75 +2.1 ± 1.3 (3 seeds)",  # docs/benchmarks.json
    ]
    # The OHEM paper's VOC mAP is AP50: our cell gives Δ AP50 besides Δ AP.
    assert cells("ohem", "faster_rcnn") == [
        "AP50 66.9 → 69.9 (+3.0)",
        "AP -2.5 ± 0.7, AP50 -2.5 ± 0.7 (2 seeds); diverged: OHEM (paper) seed 0 (after "
        "iteration 119)",
        "not run",
        "AP -5.0 ± 1.4, AP50 -7.8 ± 1.6 (3 seeds)",
    ]
    # The accuracy table: the diverged run's metrics (its last evaluation) are not a result.
    assert _row(md, "OHEM (paper) (2 of 3 seeds; diverged: seed 0 (after iteration 119))")[1:5] == [
        "50.5 ± 0.7",
        "50.5 ± 0.7",
        "50.5 ± 0.7",
        "50.5 ± 0.7",
    ]
    assert "| -2.5 ± 0.7 | -2.5 ± 0.7 | +7.5 ± 0.7 | worse |" in md
    assert cells("ohem_mmdet", "faster_rcnn")[:3] == ["AP 36.4 → 36.6 (+0.2)", "not run", "not run"]
    assert cells("retinanet_atss", "retinanet")[:2] == ["AP 38.4 → 39.2 (+0.8)", "not run"]
    assert cells("atss", "retinanet")[:3] == [
        "AP 37.0 → 39.3 (+2.3)",
        "no seed with both runs finished",
        "not run",
    ]
    assert cells("libra", "faster_rcnn") == [
        "AP 35.9 → 38.5 (+2.6)",
        "AP +2.0 ± 1.4 (2 seeds)",
        "not run",
        "not run",
    ]
    assert cells("fcos_atss", "fcos")[:2] == ["AP 38.6 → 39.2 (+0.6)", "not run"]
    # One row per published comparison, each a method of every regime (the opt-in ones: of
    # every regime that has them) against its baseline.
    published = suite_lib.papers.PUBLISHED
    assert [e["method"] for e in published] == [
        "ohem",
        "ohem_mmdet",
        "iou_balanced",
        "retinanet_atss",
        "atss",
        "fcos_atss",
        "libra_sampler_bfp",
        "libra",
    ]
    for e in published:
        for r in lib.regimes.REGIMES.values():
            if e["method"] in {m.key for m in r.methods}:
                assert r.method(e["method"]).baseline == e["baseline"]
            else:
                assert e["method"] in {m.key for m in r.extra_methods} or not r.extra_methods
                assert e["method"] in {m.key for m in lib.regimes.REGIMES["bccd"].extra_methods}
        assert lib.regimes.REGIMES["bccd"].method(e["method"]).baseline == e["baseline"]

    # No regime with results: no table.
    empty = tmp_path / "empty"
    empty.mkdir()
    md = lib.markdown.render_report(dict.fromkeys(lib.regimes.REGIMES), empty).read_text()
    assert "Against the papers" not in md


def test_a_method_whose_runs_all_diverged_has_no_numbers(tmp_path):
    """Every seed diverged: the accuracy and error tables say so, no last-evaluation numbers."""
    lib = _suite_lib()
    regime = lib.regimes.REGIMES["bccd"]
    results_dir, out = tmp_path / "results", tmp_path / "docs"
    out.mkdir()
    keys = [m.key for m in regime.methods]
    for key, seed, ap in [("faster_rcnn", 0, 50.0), ("faster_rcnn", 1, 52.0)]:
        m = regime.method(key)
        path = lib.store.result_file(results_dir, regime.name, "method", m.run_name, seed)
        lib.store.write_json(path, _fake_result(regime, m, seed, ap, keys, [0, 1, 2]))
    m = regime.method("ohem")
    for seed, it in [(0, 119), (1, 82)]:
        data = _fake_result(regime, m, seed, 16.0, keys, [0, 1, 2])
        data.update(status="diverged", iterations=it)
        path = lib.store.result_file(results_dir, regime.name, "method", m.run_name, seed)
        lib.store.write_json(path, data)
    sections = {n: None for n in lib.regimes.REGIMES}
    sections["bccd"] = lib.store.regime_results(regime, results_dir, out)
    md = lib.markdown.render_report(sections, out).read_text()
    rows = [r for r in _table_rows(md) if r.startswith("| OHEM (paper) |")]
    accuracy = [c.strip() for c in rows[0].strip().strip("|").split("|")]
    assert accuracy[1] == "diverged: seed 0 (after iteration 119), seed 1 (after iteration 82)"
    assert accuracy[2:] == [""] * 8 + ["diverged"]
    errors = md.split("### What the final detections are")[1]
    (row,) = [r for r in _table_rows(errors) if r.startswith("| OHEM (paper) |")][:1]
    assert row.split("|")[2].strip() == "diverged" and "16" not in row


def test_readme_summary_from_result_files(tmp_path):
    """
    The README's summary: one row per published comparison, then Cascade R-CNN's samplers;
    Δ AP paired by seed, bold when "better", fewer seeds and diverged runs said, "not run".
    """
    lib = _suite_lib()
    regime = lib.regimes.REGIMES["bccd"]
    results_dir, out = tmp_path / "results", tmp_path / "docs"
    out.mkdir()
    keys = [m.key for m in regime.methods]

    def put(key, seed, ap, status=None):
        m = regime.method(key)
        data = _fake_result(regime, m, seed, ap, keys, [0, 1, 2])
        if status:
            data.update(status=status, iterations=100)
        path = lib.store.result_file(results_dir, regime.name, "method", m.run_name, seed)
        lib.store.write_json(path, data)

    for seed, ap in enumerate([50.0, 52.0, 54.0]):
        put("faster_rcnn", seed, ap)
        put("iou_balanced", seed, ap + [2.0, 3.0, 4.0][seed])  # +3.0 ± 1.0: better
        put("ohem", seed, 10.0, status="diverged")
    put("ohem_mmdet", 0, 49.0)  # one seed: no spread
    put("ohem_mmdet", 1, 20.0, status="diverged")
    for seed, ap in enumerate([60.0, 61.0]):
        put("cascade", seed, ap)
        put("cascade_iou_balanced", seed, ap - [0.5, 1.5][seed])  # -1.0 ± 0.7: not bold
    sections = dict.fromkeys(lib.regimes.REGIMES)
    sections["bccd"] = lib.store.regime_results(regime, results_dir, out)
    names = list(lib.regimes.REGIMES)
    md = "\n".join(lib.markdown.render_summary(sections, names))
    assert _row(md, "method vs baseline") == [
        "method vs baseline",
        "published",
        "BCCD, pretrained",
        "synthetic, pretrained",
        "synthetic, from scratch",
    ]
    labels = {m.key: m.label for m in regime.all_methods}
    rows = _table_rows(md)[1:]  # after the header
    comparisons = lib.markdown.summary_comparisons(names)
    assert [(m, b) for m, b, _ in comparisons] == [
        ("ohem", "faster_rcnn"),
        ("ohem_mmdet", "faster_rcnn"),
        ("iou_balanced", "faster_rcnn"),
        ("retinanet_atss", "retinanet"),
        ("atss", "retinanet"),
        ("fcos_atss", "fcos"),
        ("libra_sampler_bfp", "faster_rcnn"),
        ("libra", "faster_rcnn"),
        ("cascade_iou_balanced", "cascade"),
        ("cascade_ohem", "cascade"),
    ]
    assert len(rows) == len(comparisons)

    def cells(method, baseline):
        return _row(md, f"{labels[method]} vs {labels[baseline]}")[1:3]

    assert cells("ohem", "faster_rcnn") == [
        "+3.0 AP50 (VOC 2007 test)",
        "diverged (3 of 3 seeds)",
    ]
    assert cells("ohem_mmdet", "faster_rcnn") == ["+0.2", "-1.0 (1 seed; 1 of 2 diverged)"]
    assert cells("iou_balanced", "faster_rcnn") == ["+0.9", "**+3.0 ± 1.0**"]
    assert cells("atss", "retinanet") == ["+2.3", "not run"]
    assert cells("cascade_iou_balanced", "cascade") == ["not published", "-1.0 ± 0.7 (2 seeds)"]
    assert _row(md, f"{labels['iou_balanced']} vs {labels['faster_rcnn']}")[3:] == [
        "not run",
        "not run",
    ]


def test_write_summary_replaces_what_lies_between_its_markers(tmp_path):
    lib = _suite_lib()
    md = lib.markdown
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{md.SUMMARY_BEGIN}\nold\n{md.SUMMARY_END}\n\nafter\n")
    assert md.write_summary(readme, ["| a |", "", "legend"])
    expected = f"# Title\n\n{md.SUMMARY_BEGIN}\n| a |\n\nlegend\n{md.SUMMARY_END}\n\nafter\n"
    assert readme.read_text() == expected
    assert not md.write_summary(readme, ["| a |", "", "legend"])  # unchanged
    readme.write_text("# Title without the markers\n")
    with pytest.raises(ValueError, match="README.md: expected the line .*benchmark summary"):
        md.write_summary(readme, ["| a |"])


def test_readme_summary_is_what_the_committed_results_say():
    """The table in README.md is the one the result files (and the from-scratch JSON) render:
    after new results, run `benchmarks/suite.py --render-only` and commit README.md."""
    lib = _suite_lib()
    md = lib.markdown
    names = list(lib.regimes.REGIMES)
    sections = {
        n: lib.store.regime_results(r, lib.store.RESULTS_DIR, REPO / "docs", write=False)
        for n, r in lib.regimes.REGIMES.items()
    }
    text = (REPO / "README.md").read_text()
    committed = text.split(md.SUMMARY_BEGIN + "\n")[1].split(md.SUMMARY_END)[0]
    assert committed == "\n".join(md.render_summary(sections, names)) + "\n"


def _load_cfg(config, opts):
    from d2_sampling.engine.setup import load_yacs_config

    return load_yacs_config(
        str(REPO / "configs" / config), [str(x) for x in opts], register_datasets=False
    )


def _lrs(cfg):
    """The LR of every iteration of ``cfg``'s schedule (Detectron2's scheduler)."""
    import torch
    from detectron2.solver import build_lr_scheduler

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=cfg.SOLVER.BASE_LR)
    sched = build_lr_scheduler(cfg, opt)
    out = []
    for _ in range(cfg.SOLVER.MAX_ITER):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_control_definitions():
    """
    Every control's config exists and takes its overrides; what it compares with exists in its
    regime; the BCCD controls' numbers are their configs' (OHEM's RoI batch, half the LR, the
    baseline's last LR, constant); the synthetic-scratch controls are those of its committed
    results.
    """
    lib = _suite_lib()
    regimes = lib.regimes
    for r in regimes.REGIMES.values():
        keys = [c["key"] for c in r.controls]
        assert len(set(keys)) == len(keys), r.name
        methods = {m.key for m in r.methods}
        for c in r.controls:
            assert {"key", "label", "config", "opts", "compare", "question"} <= set(c), c
            assert (REPO / "configs" / c["config"]).is_file(), c["config"]
            compare = [c["compare"]] if isinstance(c["compare"], str) else list(c["compare"])
            assert compare and set(compare) <= methods | set(keys), c["key"]
            assert c.get("weights_from") in methods | {None}
            assert c.get("family") in set(r.family_schedules) | {None}, c["key"]
            opts = list(c["opts"]) + (["MODEL.WEIGHTS", "x.pth"] if c.get("weights_from") else [])
            _load_cfg(c["config"], opts)  # unknown keys or wrong types raise
    assert regimes.REGIMES["synthetic-pretrained"].controls == ()

    bccd = {c["key"]: c for c in regimes.REGIMES["bccd"].controls}
    assert list(bccd) == [
        "faster_rcnn_2x",
        "faster_rcnn_64",
        "faster_rcnn_half_lr",
        "ohem_half_lr",
        "retinanet_gn",
        "faster_rcnn_finetune",
        "ohem_finetune",
    ]
    base_cfg = _load_cfg("BCCD/faster_rcnn_effnetlite0_FPN.yaml", [])
    ohem_cfg = _load_cfg("BCCD/faster_rcnn_effnetlite0_FPN_ohem.yaml", [])
    assert ohem_cfg.MODEL.ROI_HEADS.NAME == "OHEMROIHeads"
    # The baseline twice as long: its LR at iteration 2i is its 600-iteration LR at i, beyond
    # the warm-up (as the dense detectors' 1200-iteration schedule).
    c = bccd["faster_rcnn_2x"]
    assert c["own_schedule"] and c["compare"] == "faster_rcnn"
    twice = _lrs(_load_cfg(c["config"], c["opts"]))
    once = _lrs(base_cfg)
    assert len(twice) == 1200 and twice[2 * 100 :: 2] == pytest.approx(once[100:])
    dense = _lrs(_load_cfg("BCCD/retinanet_effnetlite0_FPN.yaml", []))
    assert [lr / dense[i] for i, lr in enumerate(twice)] == pytest.approx([2.0] * 1200)
    # a. Random sampling at the number of RoIs per image OHEM (paper) trains on.
    c = bccd["faster_rcnn_64"]
    cfg = _load_cfg(c["config"], c["opts"])
    assert cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE == ohem_cfg.MODEL.OHEM.BATCH_SIZE_PER_IMAGE
    assert cfg.MODEL.ROI_HEADS.NAME == base_cfg.MODEL.ROI_HEADS.NAME != "OHEMROIHeads"
    assert c["compare"][0] == "ohem"
    # b. Half the LR, OHEM and the baseline; nothing else changed.
    for key, ref in (("faster_rcnn_half_lr", base_cfg), ("ohem_half_lr", ohem_cfg)):
        cfg = _load_cfg(bccd[key]["config"], bccd[key]["opts"])
        assert cfg.SOLVER.BASE_LR == ref.SOLVER.BASE_LR / 2 == 0.005
        assert cfg.MODEL.ROI_HEADS.NAME == ref.MODEL.ROI_HEADS.NAME
        assert not bccd[key].get("own_schedule") and not bccd[key].get("weights_from")
    assert bccd["ohem_half_lr"]["compare"] == ("faster_rcnn_half_lr", "ohem")
    # c. Fine-tuning the baseline's final weights at its last LR, constant, 200 iterations.
    last_lr = _lrs(base_cfg)[-1]
    assert last_lr == pytest.approx(1e-4)
    for key, ref in (("faster_rcnn_finetune", base_cfg), ("ohem_finetune", ohem_cfg)):
        c = bccd[key]
        assert c["weights_from"] == "faster_rcnn" and c["own_schedule"]
        cfg = _load_cfg(c["config"], c["opts"])
        assert cfg.MODEL.ROI_HEADS.NAME == ref.MODEL.ROI_HEADS.NAME
        assert cfg.SOLVER.MAX_ITER == 200
        lrs = _lrs(cfg)
        assert lrs == pytest.approx([last_lr] * 200)
    assert bccd["ohem_finetune"]["compare"] == ("faster_rcnn_finetune", "faster_rcnn")

    # The synthetic-scratch controls, unchanged: those its committed results were run with.
    committed = json.loads((REPO / "docs" / "benchmarks.json").read_text())["controls"]
    stored = [{k: v for k, v in c.items() if k != "runs"} for c in committed]
    assert stored == [dict(c) for c in regimes.REGIMES["synthetic-scratch"].controls]


def _plan(argv, work, results_dir):
    import suite

    args = suite.parse_args(argv)
    regime = _suite_lib().regimes.REGIMES[args.regime]
    return suite.plan(regime, args, work, results_dir, "python benchmarks/suite.py")


def test_plan_of_the_scratch_controls_is_unchanged(tmp_path):
    """The overrides of the synthetic-scratch runs and controls: those of its committed runs."""
    committed = json.loads((REPO / "docs" / "benchmarks.json").read_text())
    jobs, later, _ = _plan(
        ["--regime", "synthetic-scratch", "--controls", "--no-coco", "--no-speed"],
        tmp_path / "work",
        tmp_path / "results",
    )
    assert later == []

    def tail(command):  # the overrides after OUTPUT_DIR
        return command[command.index("OUTPUT_DIR") + 2 :]

    by_key = {(j.kind, j.key, j.seed): j for j in jobs}
    for c in committed["controls"]:
        for run in c["runs"]:
            job = by_key["controls", c["key"], run["seed"]]
            assert [str(x) for x in job.overrides] == tail(run["command"])
    run = committed["synthetic"]["faster_rcnn"][0]
    assert [str(x) for x in by_key["method", "faster_rcnn", 0].overrides] == tail(run["command"])


def test_plan_of_the_bccd_controls(tmp_path):
    """
    The BCCD controls' runs: their overrides after the suite's, the fine-tuning ones with their
    own schedule (not rescaled by --iters) and the baseline's final weights of the same seed,
    run after the methods; a missing checkpoint refused with a message saying how to get it.
    """
    lib = _suite_lib()
    regime = lib.regimes.REGIMES["bccd"]
    work, results_dir = tmp_path / "work", tmp_path / "results"
    argv = ["--controls", "--control-seeds", "2", "--iters", "300"]

    # No checkpoint of the baseline, and it does not run here with --keep-checkpoints.
    with pytest.raises(SystemExit) as err:
        _plan(argv, work, results_dir)
    msg = str(err.value)
    ckpt = work / "faster_rcnn_effnetlite0_FPN" / "seed0" / "model_final.pth"
    assert str(ckpt) in msg and "--keep-checkpoints" in msg
    assert "control faster_rcnn_finetune (seed 0)" in msg
    assert str(results_dir / "bccd" / "faster_rcnn_effnetlite0_FPN" / "seed0.json") in msg

    # With --keep-checkpoints, the baseline runs of this invocation leave them: planned, checked
    # again before the controls start (suite.check_weights).
    import suite

    jobs, later, _ = _plan(argv + ["--keep-checkpoints"], work, results_dir)
    assert [(j.key, j.seed) for j in later] == [
        ("faster_rcnn_finetune", 0),
        ("faster_rcnn_finetune", 1),
        ("ohem_finetune", 0),
        ("ohem_finetune", 1),
    ]
    with pytest.raises(SystemExit, match="does not exist"):
        suite.check_weights(later[0], regime, work)

    # The checkpoints there: planned without --keep-checkpoints.
    for seed in (0, 1):
        path = work / "faster_rcnn_effnetlite0_FPN" / f"seed{seed}" / "model_final.pth"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    jobs, later, _ = _plan(argv, work, results_dir)
    schedule = lib.regimes.schedule_opts(regime.schedule, 300, False)
    assert schedule[:2] == ["SOLVER.MAX_ITER", 300]
    rest = ["TEST.EVAL_PERIOD", 100, "SOLVER.CHECKPOINT_PERIOD", 10**7]
    by_key = {(j.kind, j.key, j.seed): j for j in jobs + later}
    assert by_key["method", "faster_rcnn", 0].overrides == schedule + rest
    assert by_key["controls", "faster_rcnn_64", 1].overrides == schedule + rest + [
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
        64,
    ]
    assert by_key["controls", "ohem_half_lr", 0].overrides == schedule + rest + [
        "SOLVER.BASE_LR",
        0.005,
    ]
    assert by_key["controls", "ohem_half_lr", 0].config == regime.method("ohem").config
    for seed in (0, 1):
        j = by_key["controls", "ohem_finetune", seed]
        assert j in later and j.config == regime.method("ohem").config
        weights = work / "faster_rcnn_effnetlite0_FPN" / f"seed{seed}" / "model_final.pth"
        assert j.overrides == rest + [
            "SOLVER.BASE_LR",
            1e-4,
            "SOLVER.MAX_ITER",
            200,
            "SOLVER.WARMUP_ITERS",
            0,
            "SOLVER.STEPS",
            "()",
            "MODEL.WEIGHTS",
            weights,
        ]
        assert j.run_dir == work / "controls" / "ohem_finetune" / f"seed{seed}"
        suite.check_weights(j, regime, work)  # there: no error
    # A control with its result file is not run again: its checkpoint is not needed.
    ckpt.unlink()
    j = by_key["controls", "ohem_finetune", 0]
    with pytest.raises(SystemExit, match="ohem_finetune"):
        suite.check_weights(j, regime, work)
    lib.store.write_json(j.result_file, {"seed": 0})
    lib.store.write_json(by_key["controls", "faster_rcnn_finetune", 0].result_file, {"seed": 0})
    suite.check_weights(j, regime, work)
    _plan(argv, work, results_dir)


def test_bccd_controls_render(tmp_path):
    """The controls table: a control compared with two runs, a diverged run named; the list of
    each control's overrides."""
    lib = _suite_lib()
    regime = lib.regimes.REGIMES["bccd"]
    results_dir, out = tmp_path / "results", tmp_path / "docs"
    keys = [m.key for m in regime.methods]
    for key, ap in (("faster_rcnn", 55.0), ("ohem", 20.0)):
        m = regime.method(key)
        data = _fake_result(regime, m, 0, ap, keys, [0])
        if key == "ohem":
            data.update(status="diverged", iterations=119)
        path = lib.store.result_file(results_dir, regime.name, "method", m.run_name, 0)
        lib.store.write_json(path, data)
    controls = {c["key"]: c for c in regime.controls}
    for key, ap in (("faster_rcnn_half_lr", 53.0), ("ohem_half_lr", 50.5)):
        m = lib.regimes.Method(key, controls[key]["label"], controls[key]["config"], None, "rcnn")
        data = _fake_result(regime, m, 0, ap, keys, [0], AP50=80.0)
        data["kind"] = "controls"
        path = lib.store.result_file(results_dir, regime.name, "controls", key, 0)
        lib.store.write_json(path, data)

    res = lib.store.regime_results(regime, results_dir, out)
    assert [c["key"] for c in res["controls"]] == ["faster_rcnn_half_lr", "ohem_half_lr"]
    md = "\n".join(lib.markdown.render_controls(res, depth=1))
    assert "### Controls" in md
    rows = _table_rows(md)
    half = controls["ohem_half_lr"]
    i = rows.index(
        f"| {half['label']} | {half['question']} | [0] | 50.5 | 80.0 | "
        f"{controls['faster_rcnn_half_lr']['label']} | 53.0 | -2.5 |"
    )
    # The second comparison of the same run: its cells left empty; OHEM at LR 0.01 diverged.
    assert (
        rows[i + 1]
        == "|  |  |  |  |  | OHEM (paper) | - (diverged: seed 0 (after iteration 119)) | - |"
    )
    assert (
        f"| {controls['faster_rcnn_half_lr']['label']} | "
        f"{controls['faster_rcnn_half_lr']['question']} | [0] | 53.0 | 80.0 | "
        "Faster R-CNN, random sampling | 55.0 | -2.0 |"
    ) in rows
    assert (
        f"- {half['label']}: `BCCD/faster_rcnn_effnetlite0_FPN_ohem.yaml` `SOLVER.BASE_LR 0.005`"
    ) in md.splitlines()


def test_commit_commits_the_result_file_alone(tmp_path):
    """--commit: one commit per result file, named after the run; what else is staged stays."""
    lib = _suite_lib()
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout

    git("init", "-q")
    git("config", "user.name", "Suite Test")
    git("config", "user.email", "suite@example.com")
    (repo / "README").write_text("x\n")
    git("add", "README")
    git("commit", "-q", "-m", "init")
    (repo / "other.txt").write_text("staged, not a result\n")
    git("add", "other.txt")

    results_dir = repo / "benchmarks" / "results"
    committer = lib.store.Committer(repo, log=lambda msg: None)
    committer.check(results_dir)
    path = lib.store.result_file(results_dir, "bccd", "method", "faster_rcnn_effnetlite0_FPN", 0)
    lib.store.write_json(path, {"seed": 0})
    assert committer(path, "bccd faster_rcnn_effnetlite0_FPN seed 0")

    assert git("log", "-1", "--format=%s").strip() == (
        "Benchmark result: bccd faster_rcnn_effnetlite0_FPN seed 0"
    )
    files = git("show", "--name-only", "--format=", "HEAD").split()
    assert files == ["benchmarks/results/bccd/faster_rcnn_effnetlite0_FPN/seed0.json"]
    assert git("diff", "--cached", "--name-only").split() == ["other.txt"]

    (repo / ".gitignore").write_text("benchmarks/results/\n")
    with pytest.raises(SystemExit, match="ignored"):
        committer.check(results_dir)


def test_estimate_of_the_default_suite():
    """The duration in the report's header: the runs' iterations, evaluations and start-up."""
    lib = _suite_lib()
    bccd = lib.regimes.REGIMES["bccd"]
    low, high = lib.regimes.estimate_s(bccd, jobs=2)
    est = bccd.estimate
    per_eval = bccd.test_images * est.eval_s_per_image + est.eval_overhead_s
    # 4 R-CNN configs at 600 iterations (6 evaluations), 3 dense ones at 1200 (12), 3 seeds.
    assert [m.family for m in bccd.methods].count("rcnn") == 4 and len(bccd.methods) == 7
    assert [bccd.iters_of(f) for f in ("rcnn", "retinanet")] == [600, 1200]
    assert lib.regimes.num_evaluations(1200, 100) == 12

    def expected(s):
        rcnn = 4 * 3 * (600 * s + 6 * per_eval + est.startup_s)
        dense = 3 * 3 * (1200 * s + 12 * per_eval + est.startup_s)
        return (rcnn + dense) / 2

    assert (low, high) == (pytest.approx(expected(1.2)), pytest.approx(expected(2.0)))
    # --iters N: every run N iterations.
    low, _ = lib.regimes.estimate_s(bccd, iters=600, jobs=2)
    assert low == pytest.approx(21 * (600 * 1.2 + 6 * per_eval + est.startup_s) / 2)
    assert bccd.iters_text() == (
        "600 (Faster R-CNN (EfficientNet-Lite0-FPN, pretrained)) or 1200 (RetinaNet / ATSS "
        "(EfficientNet-Lite0-FPN, pretrained))"
    )


# ---------------------------------------------------------------------------------------------
# Error analysis


def test_error_profile_classifies_each_detection(tmp_path):
    """Tiny exact case: one detection of each type, in score order, over 5 GT boxes."""
    error_profile = _suite_lib().errors.error_profile
    gt = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1}, {"id": 2}],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {"image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10], "iscrowd": 0},
            {"image_id": 1, "category_id": 1, "bbox": [80, 0, 10, 10], "iscrowd": 0},
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 20, 20], "iscrowd": 0},
            {"image_id": 2, "category_id": 2, "bbox": [40, 40, 20, 20], "iscrowd": 0},
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 99, 99], "iscrowd": 1},  # ignored
        ],
    }
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},  # tp
        {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.8},  # duplicate
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.7},  # wrong class
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 20, 5], "score": 0.6},  # IoU .25: loc.
        {"image_id": 2, "category_id": 2, "bbox": [200, 200, 5, 5], "score": 0.5},  # background
        {"image_id": 2, "category_id": 2, "bbox": [40, 40, 20, 20], "score": 0.1},  # beyond N
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    e = error_profile(tmp_path / "dets.json", tmp_path / "gt.json")
    assert e["n"] == 5
    for k in ("tp", "duplicate", "wrong_class", "localization", "background"):
        assert e[k] == pytest.approx(0.2), k
    assert e["recall"] == e["tp"]
    assert error_profile(tmp_path / "missing.json", tmp_path / "gt.json") is None


def test_plan_gives_each_family_its_schedule(tmp_path, monkeypatch):
    """bccd: the R-CNN configs train 600 iterations, the dense ones their configs' 1200;
    synthetic-pretrained: every config 1200 (the overrides write it out, the settings record
    it); --iters N: every run N; a result file of another length (its config's schedule changed
    since) is refused, not mixed in."""
    lib = _suite_lib()
    bccd = lib.regimes.REGIMES["bccd"]
    work, results = tmp_path / "work", tmp_path / "results"
    # A dense control trains on the dense configs' schedule too.
    (gn,) = _plan(
        ["--regime", "bccd", "--seeds", "1", "--controls", "--control-keys", "retinanet_gn"]
        + ["--methods", "atss"],
        work,
        results,
    )[0][1:]
    cfg = _load_cfg(gn.config, list(gn.overrides))
    assert gn.kind == "controls" and cfg.MODEL.RETINANET.NORM == "GN"
    assert gn.iterations == gn.settings["iters"] == cfg.SOLVER.MAX_ITER == 1200
    iters = {
        "bccd": {"rcnn": 600, "retinanet": 1200},
        "synthetic-pretrained": {"rcnn": 1200, "retinanet": 1200},
    }
    for name in iters:
        regime = lib.regimes.REGIMES[name]
        jobs, _, _ = _plan(["--regime", name, "--seeds", "1"], work, results)
        by_key = {j.key: j for j in jobs}
        assert set(by_key) == {m.key for m in regime.methods}, name
        for m in regime.methods:
            j = by_key[m.key]
            want = iters[name][m.family]
            assert j.iterations == want and j.settings["iters"] == want, m.key
            cfg = _load_cfg(m.config, list(j.overrides))
            assert cfg.SOLVER.MAX_ITER == want, m.key
            assert tuple(cfg.SOLVER.STEPS) == ((960, 1120) if want == 1200 else (480, 560)), m.key
        assert by_key["faster_rcnn"].overrides[:2] == ["TEST.EVAL_PERIOD", 100]  # untouched
    jobs, _, _ = _plan(["--regime", "bccd", "--seeds", "1", "--iters", "300"], work, results)
    for j in jobs:
        cfg = _load_cfg(j.config, list(j.overrides))
        assert j.iterations == cfg.SOLVER.MAX_ITER == 300 and j.settings["iters"] == 300

    # --iters rescales each family's own schedule, keeping its shape (not the R-CNN one's).
    other_shape = lib.regimes.Schedule(1200, 400, (600, 1100))
    monkeypatch.setitem(
        lib.regimes.REGIMES,
        "bccd",
        dataclasses.replace(bccd, family_schedules={"retinanet": other_shape}),
    )
    jobs, _, _ = _plan(["--regime", "bccd", "--seeds", "1", "--iters", "300"], work, results)
    for j in jobs:
        dense = bccd.method(j.key).family == "retinanet"
        cfg = _load_cfg(j.config, list(j.overrides))
        assert cfg.SOLVER.WARMUP_ITERS == (100 if dense else 50), j.key
        assert tuple(cfg.SOLVER.STEPS) == ((150, 275) if dense else (240, 280)), j.key

    # A dense run's result file from when its config trained 600 iterations.
    (job,) = [
        j
        for j in _plan(["--regime", "bccd", "--seeds", "1"], work, results)[0]
        if j.key == "retinanet"
    ]
    stale = _fake_result(bccd, bccd.method("retinanet"), 0, 30.0, ["retinanet"], [0])
    stale["settings"].update(
        config=job.config,
        overrides=[lib.runner.relative_to_repo(x) for x in job.overrides],
        extra_args=[lib.runner.relative_to_repo(x) for x in job.extra_args],
    )
    lib.store.write_json(job.result_file, stale)  # "iterations": 600
    with pytest.raises(
        SystemExit, match="trained 600 iterations, this invocation's schedule has 1200"
    ):
        lib.runner.run_train(job, 1, lambda _: None, machine={})


def test_plan_of_the_opt_in_methods(tmp_path):
    """bccd: the default plan leaves the opt-in methods out; --extra runs them alone (their
    default-set baselines come from its runs); --methods reaches both; --extra elsewhere fails."""
    regimes = _suite_lib().regimes
    bccd = regimes.REGIMES["bccd"]
    work, results = tmp_path / "work", tmp_path / "results"
    jobs, _, _ = _plan(["--regime", "bccd", "--seeds", "1"], work, results)
    assert [j.key for j in jobs] == [m.key for m in bccd.methods]
    jobs, _, _ = _plan(["--regime", "bccd", "--seeds", "2", "--extra"], work, results)
    extra = [m.key for m in bccd.extra_methods]
    assert [j.key for j in jobs] == extra * 2 and [j.seed for j in jobs] == [0] * 7 + [1] * 7
    for m in bccd.extra_methods:  # every baseline exists, in one set or the other
        assert m.baseline is None or bccd.method(m.baseline).key == m.baseline
        assert (regimes.REPO / "configs" / m.config).is_file()
    jobs, _, _ = _plan(
        ["--regime", "bccd", "--seeds", "1", "--methods", "libra", "faster_rcnn"], work, results
    )
    assert [j.key for j in jobs] == ["faster_rcnn", "libra"]
    with pytest.raises(SystemExit, match="no opt-in methods"):
        _plan(["--regime", "synthetic-pretrained", "--extra"], work, results)


def test_plan_of_chosen_controls(tmp_path):
    """--control-keys runs only the controls named (a fine-tuning one still waits for the
    methods and their checkpoints); an unknown key, or the option without --controls, fails."""
    work, results_dir = tmp_path / "work", tmp_path / "results"
    argv = ["--controls", "--keep-checkpoints", "--seeds", "1", "--methods", "faster_rcnn"]
    jobs, later, _ = _plan(
        argv + ["--control-keys", "ohem_half_lr", "ohem_finetune"], work, results_dir
    )
    assert [(j.kind, j.key) for j in jobs] == [
        ("method", "faster_rcnn"),
        ("controls", "ohem_half_lr"),
    ]
    assert [j.key for j in later] == ["ohem_finetune"]
    with pytest.raises(SystemExit, match="unknown --control-keys"):
        _plan(argv + ["--control-keys", "ohem_double_lr"], work, results_dir)
    with pytest.raises(SystemExit, match="add --controls"):
        _plan(["--control-keys", "ohem_half_lr"], work, results_dir)
