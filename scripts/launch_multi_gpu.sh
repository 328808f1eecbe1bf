#!/usr/bin/env bash
# Multi-GPU / multi-machine launch examples for train_net.py. Usage:
#   scripts/launch_multi_gpu.sh detectron2 CONFIG [overrides...]   # Detectron2's launch
#   scripts/launch_multi_gpu.sh torchrun   CONFIG [overrides...]   # torchrun (env://)
# Environment: NUM_GPUS (per machine, default: all visible GPUs, or 2 CPU workers),
# NUM_MACHINES (default 1), MACHINE_RANK (default 0), MASTER_ADDR / MASTER_PORT (multi-machine).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: $0 detectron2|torchrun CONFIG [overrides...]}
config=${2:?usage: $0 detectron2|torchrun CONFIG [overrides...]}
shift 2
PY=${PY:-.venv/bin/python}
gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
NUM_GPUS=${NUM_GPUS:-$([ "$gpus" -gt 0 ] && echo "$gpus" || echo 2)}
NUM_MACHINES=${NUM_MACHINES:-1}
MACHINE_RANK=${MACHINE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}

case "$mode" in
  detectron2)
    # Spawns NUM_GPUS workers here; every machine runs the same command with its own rank.
    extra=()
    if [ "$NUM_MACHINES" -gt 1 ]; then
      extra=(--num-machines "$NUM_MACHINES" --machine-rank "$MACHINE_RANK"
             --dist-url "tcp://$MASTER_ADDR:$MASTER_PORT")
    fi
    exec "$PY" train_net.py --num-gpus "$NUM_GPUS" "${extra[@]}" --config-file "$config" "$@"
    ;;
  torchrun)
    # torchrun starts the workers and sets RANK/WORLD_SIZE/LOCAL_RANK; train_net.py uses env://.
    exec "$PY" -m torch.distributed.run --nproc_per_node "$NUM_GPUS" --nnodes "$NUM_MACHINES" \
      --node_rank "$MACHINE_RANK" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
      train_net.py --config-file "$config" "$@"
    ;;
  *)
    echo "unknown mode $mode (detectron2 or torchrun)" >&2; exit 2 ;;
esac
