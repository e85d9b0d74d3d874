#!/usr/bin/env bash
# Every GPU measurement of bench/README.md in one time-boxed, fail-soft command (bench/gpu_check.py says what).
#   bench/gpu_check.sh [--out DIR] [--budget SECONDS]    # on a GPU (default: 270 s, results in bench/results/)
#   bench/gpu_check.sh --dry-run [--out DIR]             # the same code on CPU with tiny models (CI)
# ROS-free: only the core (PYTHONPATH=the repository) and torch/transformers/numpy/OpenCV are needed.
# The interpreter: $PYTHON, else the repository's .venv if it works, else python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$py" bench/gpu_check.py "$@"
