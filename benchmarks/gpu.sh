#!/usr/bin/env bash
# The GPU check (benchmarks/gpu.py) on a CUDA machine: BENCHMARKS.md's section "gpu" and benchmarks/gpu.json.
# Under 8 minutes end to end on one recent GPU. Run from anywhere; extra arguments go to gpu.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
exec "$PYTHON" benchmarks/gpu.py --json benchmarks/gpu.json "$@"
