"""scripts/demo.sh (`make demo`): trains, evaluates, then draws the detections of the first
validation images next to the metrics; run here on the 4-iteration quick schedule, seeded."""

import json
import os
import subprocess
import sys

import pytest

from helpers import CONFIGS, REPO


@pytest.mark.slow
def test_demo_script_trains_evaluates_and_draws(tmp_path):
    out = tmp_path / "demo"
    env = dict(
        os.environ,
        PY=sys.executable,
        DEMO_CONFIG=str(CONFIGS / "quick_schedules/faster_rcnn_tiny_FPN_instant_test.yaml"),
        DEMO_OUTPUT=str(out),
        DEMO_IMAGES="2",
        DEMO_OPTS="SEED 0",
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/demo.sh")],
        cwd=tmp_path,  # the script runs from the repository root whatever the caller's folder
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert any("bbox/AP" in m for m in metrics)
    pngs = sorted(p.name for p in (out / "predictions").glob("*.png"))
    assert pngs == ["000000.png", "000001.png"]
    written = json.loads((out / "predictions" / "predictions.json").read_text())
    assert isinstance(written, list)
    assert "SEED: 0" in (out / "config.yaml").read_text()
