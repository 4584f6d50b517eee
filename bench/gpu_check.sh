#!/usr/bin/env bash
# The GPU check: prepare its carry here, then run it in one go on a lent GPU machine.
#
#   bench/gpu_check.sh prepare                 # here: bench/build/gpu-carry/, checked < 64 MiB
#   bench/gpu_check.sh run --dry-run           # there (or here): preconditions and the plan
#   bench/gpu_check.sh run --out "$OUT"        # there: results in $OUT/gpu_check.json
#
# With the device tool: carry ["bench/build/gpu-carry"], timeout_s 600, and the command
#   bash bench/gpu_check.sh run --out "$OUT"
# The steps, their budgets and what they measure: bench/gpu_check.py's docstring.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" bench/gpu_check.py "$@"
