#!/usr/bin/env bash
# Stage 2 side by side on the val split (issue 4's check): the dual SFT model the RL runs start from,
# and the three estimators after equal steps. Reuses a finished demo; about a minute on 2 cores.
# Usage: scripts/rl_compare.sh [RUN_DIR (default runs/demo)]
set -euo pipefail
run=${1:-runs/demo}
bin=$(dirname "$0")/../.venv/bin
export HF_HUB_OFFLINE=1
models=(sft_dual rl_dual rl_dual_paper rl_grpo)
for m in "${models[@]}"; do
  if [ ! -f "$run/eval_val/$m/metrics.json" ]; then
    "$bin/personadual" eval --model "$run/$m/model" --data "$run/data/val.jsonl" --out "$run/eval_val/$m" --name "$m" > /dev/null
  fi
done
"$bin/personadual" report "${models[@]/#/$run/eval_val/}" --out "$run/eval_val/report"
