#!/usr/bin/env bash
# GPU check: tokens/s and peak GPU memory of b_v (bf16, and 8-bit when bitsandbytes is present),
# LoRA r=8 and, if it fits, full fine-tuning, on a randomly initialised LLaMA-2-7B-shaped model
# built in bf16 on the GPU (no download, no network). Prints one table; under 8 minutes.
#
#   bash bench/gpu_check.sh                 # batch 4 x 512 tokens
#   bash bench/gpu_check.sh --batch 2 --seq 1024 --steps 5
#
# Without a CUDA device it prints "no CUDA device" and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout --signal=INT 470 "$PY" bench/gpu_check.py "$@"
