#!/usr/bin/env bash
# One-shot GPU check for a machine with one CUDA GPU (sized for an H100/H200: under 7 minutes):
# every test marked cuda, then bench_dream, the live-loop benchmark and bench_saliency on CUDA,
# then one JSON summary (stdout and --out). Details: scripts/gpu_check.py.
#   bash scripts/gpu_check.sh                          # writes gpu-check.json here
#   bash scripts/gpu_check.sh --out /tmp/gpu.json
#   bash scripts/gpu_check.sh --dry-run                # the plan, checked; runs nothing, no GPU needed
# The interpreter: $PYTHON, else the repository's .venv (scripts/install.sh), else python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi
exec "$python" "$root/scripts/gpu_check.py" --python "$python" "$@"
