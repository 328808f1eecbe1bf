"""
The benchmark suite (`benchmarks/suite.py`): its entry point runs end to end in every regime
(`--quick`), so it does not rot; it resumes from its result files and renders from them alone;
`--commit` commits a result file and nothing else; the error analysis classifies detections
exactly. Structure only, never accuracy.
"""

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
    import suite_lib.regimes
    import suite_lib.runner
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


# ---------------------------------------------------------------------------------------------
# Resuming and rendering from the result files (no training)


def _fake_result(regime, method, seed, ap, methods, seeds):
    """A result file as run_train writes it, with made-up numbers."""
    return {
        "metrics": {k: ap for k in METRIC_KEYS},
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
        lib.store.write_json(path, _fake_result(regime, m, seed, ap, keys, [0, 1, 2]))

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
    assert agg["progress"] == {"done": 3, "planned": 21}
    assert [len(agg["runs"][k]) for k in keys] == [2, 1, 0, 0, 0, 0, 0]
    md = (out / "benchmarks.md").read_text()
    titles = [line for line in md.splitlines() if line.startswith("## ")]
    assert titles[0] == f"## {regime.title}"  # BCCD first
    assert len(titles) == 3  # every regime has a section, run or not
    assert "**Incomplete: 3 of 21 runs done.**" in md
    assert "| OHEM (paper) (1 of 3 seeds) | 58.0 ± 0.0 |" in md
    # Δ paired by seed: OHEM's seed 0 against the baseline's seed 0 only.
    assert "| -2.0 ± 0.0 | -2.0 ± 0.0 | -2.0 ± 0.0 | not better (1 seed) |" in md
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
    runs = len(bccd.methods) * bccd.seeds
    assert runs == 21 and lib.regimes.num_evaluations(600, 100) == 6
    assert low == pytest.approx(runs * (600 * 2.5 + 6 * per_eval + est.startup_s) / 2)
    assert high == pytest.approx(runs * (600 * 3.3 + 6 * per_eval + est.startup_s) / 2)


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
