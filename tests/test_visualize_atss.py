"""tools/visualize_atss.py and tools/visualize_bfp.py on real images (BCCD)."""

import pytest

from helpers import BCCD, CONFIGS, bccd_available, run_script


@pytest.mark.skipif(not bccd_available(), reason="BCCD not found beside the checkout")
@pytest.mark.parametrize(
    "config",
    [
        # ATSS on its own anchors (yacs).
        "BCCD/atss_effnetlite0_FPN.yaml",
        # FCOSATSS: ATSS on one square per FCOS location (its atss_anchor_generator), from the
        # LazyConfig twin.
        "BCCD/fcos_atss_effnetlite0_FPN.py",
    ],
)
def test_voc_dataset(tmp_path, config):
    """BCCD val image 8 (BloodImage_00037, 30 boxes), a BCCD ATSS config (no weights)."""
    out = tmp_path / "atss.png"
    proc = run_script(
        "tools/visualize_atss.py",
        "--config-file", CONFIGS / config,
        "--voc-dataset", "atss_plot_bccd_val", BCCD, "val", "--dataset", "atss_plot_bccd_val",
        "--index", "8", "--max-gt", "1", "--output", out,
        timeout=300,
    )  # fmt: skip
    assert out.stat().st_size > 10_000
    # Every box of the image is a GT; ATSS gives each at least one positive anchor.
    positives = int(proc.stdout.split("30 GT, ")[1].split()[0])
    assert positives >= 30


@pytest.mark.skipif(not bccd_available(), reason="BCCD not found beside the checkout")
def test_visualize_bfp(tmp_path):
    """tools/visualize_bfp.py on a BCCD image with the BCCD Libra R-CNN (initial weights); a
    model without a balanced feature pyramid is refused by name."""
    out = tmp_path / "bfp.png"
    proc = run_script(
        "tools/visualize_bfp.py",
        "--config-file", CONFIGS / "BCCD/libra_faster_rcnn_effnetlite0_FPN.yaml",
        "--dataset", "bccd_val", "--index", "0", "--output", out,
        timeout=300,
    )  # fmt: skip
    assert out.stat().st_size > 10_000
    assert "p2" in proc.stdout and "p6" in proc.stdout
    bad = run_script(
        "tools/visualize_bfp.py",
        "--config-file", CONFIGS / "BCCD/faster_rcnn_effnetlite0_FPN.yaml",
        "--dataset", "bccd_val", "--output", tmp_path / "x.png",
        timeout=300, check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and "not a BalancedFeaturePyramid" in bad.stdout
