#!/usr/bin/env bash
# Install the project into the active Python environment: `bash scripts/install.sh` (run) or
# `bash scripts/install.sh dev` (run + tests). Versions come from constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:+[$1]}
python -m pip install -q --upgrade pip
if ! command -v nvidia-smi >/dev/null 2>&1; then
  # No GPU here: install the CPU build of torch first; a bare `torch` would pull a multi-GB CUDA build.
  # Elsewhere set TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu to fetch the CPU wheel.
  python -m pip install -q "torch==2.13.0" ${TORCH_CPU_INDEX:+--index-url "$TORCH_CPU_INDEX"}
fi
# setuptools prints a banner on every editable install about folders named like the package; the pipeline
# refuses such a working directory itself (pipeline/config.py), so the banner would only alarm.
PYTHONWARNINGS="ignore:Editable installation" python -m pip install -q -c constraints.txt -e ".${extra}"
