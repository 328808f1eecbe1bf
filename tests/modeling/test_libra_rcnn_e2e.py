"""
The whole Libra R-CNN (IoU-balanced sampling + balanced feature pyramid + balanced L1) trained
end to end with train_net.py from yacs and LazyConfig, seeded, asserting what holds whatever
the weights: finite losses, the overrides in the written config, an evaluation; images without
annotations; the 2-process CPU run with identical weights on both workers.
"""

import json
import math

import pytest
import yaml

from helpers import (
    CONFIGS,
    assert_workers_agree,
    read_metrics,
    run_train_net,
    write_empty_images_dataset,
)

QUICK_YAML = CONFIGS / "quick_schedules/libra_faster_rcnn_tiny_FPN_instant_test.yaml"
QUICK_PY = CONFIGS / "quick_schedules/libra_faster_rcnn_tiny_FPN_instant_test.py"


def _losses(metrics):
    return [m["total_loss"] for m in metrics if "total_loss" in m]


@pytest.mark.slow
def test_e2e_yacs_images_without_annotations_and_overrides(tmp_path):
    empty_json, image_root = write_empty_images_dataset(tmp_path)
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        QUICK_YAML,
        "--coco-dataset",
        "libra_test_empty",
        empty_json,
        image_root,
        "DATASETS.TRAIN",
        '("libra_test_empty",)',
        "DATALOADER.FILTER_EMPTY_ANNOTATIONS",
        "False",
        "MODEL.BFP.REFINE_LEVEL",
        1,
        "MODEL.ROI_BOX_HEAD.BALANCED_L1.GAMMA",
        2.0,
        "SOLVER.MAX_ITER",
        2,
        "OUTPUT_DIR",
        out,
    )
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["MODEL"]["BFP"]["REFINE_LEVEL"] == 1
    assert cfg["MODEL"]["ROI_BOX_HEAD"]["BALANCED_L1"]["GAMMA"] == 2.0
    metrics = read_metrics(out)
    assert all(math.isfinite(v) for v in _losses(metrics)) and _losses(metrics)
    # No annotation, no foreground RoI: the balanced L1 loss is exactly 0.
    assert [m["loss_box_reg"] for m in metrics if "loss_box_reg" in m][-1] == 0


@pytest.mark.slow
def test_e2e_lazy_with_overrides(tmp_path):
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        QUICK_PY,
        "model.backbone.refine_type=conv",
        "model.roi_heads.box_predictor.balanced_l1_alpha=0.25",
        "train.max_iter=4",
        f"train.output_dir={out}",
    )
    written = (out / "config.yaml").read_text()
    assert "refine_type: conv" in written and "balanced_l1_alpha: 0.25" in written
    metrics = read_metrics(out)
    assert all(math.isfinite(v) for v in _losses(metrics)) and _losses(metrics)
    assert any("bbox/AP" in m for m in metrics)


@pytest.mark.slow
def test_e2e_yacs_two_process(tmp_path):
    out = tmp_path / "out"
    run_train_net(
        "--config-file",
        QUICK_YAML,
        "--num-gpus",
        2,
        "--check-weight-sync",
        "OUTPUT_DIR",
        out,
    )
    assert_workers_agree(out)
    assert any("bbox/AP" in m for m in read_metrics(out))


@pytest.mark.slow
def test_benchmark_quick(tmp_path):
    """benchmarks/bench_libra_fcos.py --quick: one iteration of everything, every row."""
    from helpers import run_script

    out = tmp_path / "bench.json"
    run_script("benchmarks/bench_libra_fcos.py", "--quick", "--json", out)
    res = json.loads(out.read_text())
    assert set(res["training"]["ratios"]) == {
        "FCOS + ATSS / FCOS",
        "Libra R-CNN / Faster R-CNN",
        "+ sampler / Faster R-CNN",
        "+ BFP / Faster R-CNN",
    }
    assert all(v > 0 for v in res["training"]["ms"].values())
    assert res["box_loss"]["box_head"] > 0 and res["box_loss"]["balanced_l1"] > 0
