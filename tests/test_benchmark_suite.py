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
        assert run["errors"]["n"] > 0  # error profile of the final detections
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
    assert [c["key"] for c in results["controls"]] == ["faster_rcnn_64", "retinanet_gn"]
    for c in results["controls"]:
        (run,) = c["runs"]
        assert run["method"] == c["key"] and run["iterations"] == 2
        assert f"| {c['label']} |" in md
    assert "## What the samplers did" in md and "## Controls" in md
    assert "## What the final detections are" in md
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


def _load_suite():
    import importlib.util

    from helpers import REPO

    spec = importlib.util.spec_from_file_location("bench_suite", REPO / "benchmarks" / "suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_error_profile_classifies_each_detection(tmp_path):
    """Tiny exact case: one detection of each type, in score order, over 5 GT boxes."""
    suite = _load_suite()
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
    e = suite.error_profile(tmp_path / "dets.json", tmp_path / "gt.json")
    assert e["n"] == 5
    for k in ("tp", "duplicate", "wrong_class", "localization", "background"):
        assert e[k] == pytest.approx(0.2), k
    assert e["recall"] == e["tp"]
    assert suite.error_profile(tmp_path / "missing.json", tmp_path / "gt.json") is None
