"""The benchmark suite's entry point runs end to end (`suite.py --quick`), so it does not rot."""

import json

import pytest

from helpers import run_script

# suite.py's method keys and labels, written out: a method dropped from the suite fails here.
METHODS = {
    "faster_rcnn": "Faster R-CNN, random sampling",
    "ohem": "OHEM (paper)",
    "ohem_mmdet": "OHEM (MMDetection)",
    "iou_balanced": "IoU-balanced sampling",
    "retinanet": "RetinaNet",
    "retinanet_atss": "RetinaNet + ATSS assignment",
    "atss": "ATSS",
}


@pytest.mark.slow
def test_suite_quick(tmp_path):
    out = tmp_path / "bench"
    run_script("benchmarks/suite.py", "--quick", "--controls", "--out", out, timeout=600)

    results = json.loads((out / "benchmarks.json").read_text())
    assert results["settings"]["quick"] and results["settings"]["iters"] == 2
    assert results["settings"]["train_dataset"] == "synthetic_mini_train"
    assert {m["key"] for m in results["methods"]} == set(METHODS)
    for key in METHODS:
        (run,) = results["synthetic"][key]  # one seed
        assert run["iterations"] == 2 and len(run["ap_curve"]) >= 1
        assert set(run["metrics"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert run["peak_rss_mb"] > 0
        assert run["diagnostics"]["total_loss"] > 0
    # Each sampler's own training scalars reach the results (what the "samplers did" table reads).
    assert results["synthetic"]["ohem"][0]["diagnostics"]["roi_head/ohem_pool_size"] > 0
    iou_neg = results["synthetic"]["iou_balanced"][0]["diagnostics"]
    assert 0 <= iou_neg["roi_head/iou_balanced_neg_mean_iou"] < 0.5
    assert results["synthetic"]["atss"][0]["diagnostics"]["atss/num_pos_per_gt"] > 0
    assert "roi_head/ohem_pool_size" not in results["synthetic"]["faster_rcnn"][0]["diagnostics"]
    assert set(results["speed"]) == {"bench_atss", "bench_ohem", "bench_iou_balanced"}
    for k in ("cpu_model", "usable_cores", "torch", "detectron2"):
        assert results["machine"][k]
    assert results["wall_s"] > 0 and results["date"]

    md = (out / "benchmarks.md").read_text()
    table_rows = [line for line in md.splitlines() if line.startswith("| ")]
    for label in METHODS.values():
        # an accuracy row and a training-speed row per method
        assert sum(line.startswith(f"| {label} |") for line in table_rows) >= 2, label
    # The opt-in controls ran, each compared with its suite run of the same seed.
    assert [c["key"] for c in results["controls"]] == ["ohem_128", "faster_rcnn_64"]
    for c in results["controls"]:
        (run,) = c["runs"]
        assert run["method"] == c["key"] and run["iterations"] == 2
        assert f"| {c['label']} |" in md
    assert "## What the samplers did" in md and "## Controls" in md
    for fam in ("rcnn", "retinanet"):
        png = out / "images" / f"benchmarks_{fam}_ap.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"images/benchmarks_{fam}_ap.png" in md

    # Resumable: a second invocation finds every result and trains nothing.
    (out / "benchmarks.md").unlink()
    again = run_script("benchmarks/suite.py", "--quick", "--controls", "--out", out, timeout=120)
    assert "  run  " not in again.stdout and "skip" in again.stdout
    assert (out / "benchmarks.md").is_file()
    resumed = json.loads((out / "benchmarks.json").read_text())
    assert resumed["resumed"] and resumed["machine"] == results["machine"]
    assert resumed["wall_s"] >= results["wall_s"]
