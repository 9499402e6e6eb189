#!/usr/bin/env bash
# Calibration of the advisor (docs/DIAGNOSE.md): a reduced comparison with the diagnosis hook on every
# BIG-bench task in ../shared/data/bigbench plus rotten_tomatoes, MiniLM, one task after another.
# Usage: benchmarks/calibrate_advisor.sh [OUT_ROOT=/tmp/calib] [DATA_DIR=/work/shared/data/bigbench]
set -u
OUT_ROOT=${1:-/tmp/calib}
DATA_DIR=${2:-/work/shared/data/bigbench}
PEFTLAB=${PEFTLAB:-peftlab}
FLAGS=${FLAGS:---model minilm --methods full,lora,adapter,ia3 --max-train-examples 600 --max-eval-examples 200 --epochs 2 --no-robustness}
mkdir -p "$OUT_ROOT"
for data in rotten_tomatoes "$DATA_DIR"/*.json; do
  name=$(basename "$data" .json)
  echo "== $name $(date +%T)"
  $PEFTLAB compare --data "$data" $FLAGS --out "$OUT_ROOT/$name" > "$OUT_ROOT/$name.log" 2>&1
  echo "   rc=$? $(date +%T)"
done
