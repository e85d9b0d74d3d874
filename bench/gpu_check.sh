#!/usr/bin/env bash
# Every GPU measurement of bench/README.md in one time-boxed, fail-soft command (bench/gpu_check.py says what).
#   bench/gpu_check.sh [--out DIR] [--budget SECONDS]    # on a GPU (default: 240 s, results in bench/results/)
#   bench/gpu_check.sh --dry-run [--out DIR]             # the same code on CPU with tiny models (CI)
# ROS-free: only the core (PYTHONPATH=the repository) and torch/transformers/numpy/OpenCV are needed.
# The interpreter: $PYTHON, else the repository's .venv if it works, else python3.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec "$py" bench/gpu_check.py "$@"
