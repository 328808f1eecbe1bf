#!/usr/bin/env bash
# `make demo`: train the demo config on the CPU and evaluate it (COCO AP on synthetic_val), then
# draw its detections on the first validation images next to the metrics:
# OUTPUT/predictions/<image>.png (and predictions.json). docs/demo.md.
#   DEMO_CONFIG  the config (default: the ImageNet-pretrained EfficientNet-Lite0-FPN demo)
#   DEMO_OUTPUT  the output folder (default: output/demo)
#   DEMO_IMAGES  how many validation images to draw (default: 3)
#   DEMO_OPTS    extra config overrides for train_net.py (KEY VALUE ..., e.g. "SEED 0")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CONFIG=${DEMO_CONFIG:-configs/Synthetic/faster_rcnn_effnetlite0_FPN_demo.yaml}
OUT=${DEMO_OUTPUT:-output/demo}
N=${DEMO_IMAGES:-3}

# shellcheck disable=SC2086  # DEMO_OPTS: words on purpose
"$PY" train_net.py --config-file "$CONFIG" --num-gpus 1 OUTPUT_DIR "$OUT" ${DEMO_OPTS:-}
# The first images of synthetic_val (the demo configs' test set).
mapfile -t IMAGES < <("$PY" - "$N" <<'PYEOF'
import sys

from d2_sampling.data import prepare_datasets
from d2_sampling.data.synthetic import synthetic_paths

prepare_datasets(["synthetic_val"])  # generated on first use
images = sorted(synthetic_paths("synthetic_val")[1].iterdir())[: int(sys.argv[1])]
print("\n".join(str(p) for p in images))
PYEOF
)
"$PY" tools/predict.py --config-file "$CONFIG" --weights "$OUT/model_final.pth" \
    --input "${IMAGES[@]}" --output "$OUT/predictions"
echo "demo: metrics in $OUT/metrics.json and $OUT/log.txt, detections in $OUT/predictions/"
