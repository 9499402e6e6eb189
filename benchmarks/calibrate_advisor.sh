#!/usr/bin/env bash
# Calibration of the advisor (docs/DIAGNOSE.md): a reduced comparison with the diagnosis hook on every
# BIG-bench task in ../shared/data/bigbench plus rotten_tomatoes, MiniLM, one task after another.
# Usage: benchmarks/calibrate_advisor.sh [OUT_ROOT=/tmp/calib] [DATA_DIR=/work/shared/data/bigbench] [LANE LANES]
# LANE/LANES (default 0 1): run only every LANES-th task starting at LANE, so two lanes can run side by side.
set -u
OUT_ROOT=${1:-/tmp/calib}
DATA_DIR=${2:-/work/shared/data/bigbench}
PEFTLAB=${PEFTLAB:-peftlab}
LANE=${3:-0}
LANES=${4:-1}
FLAGS=${FLAGS:---model minilm --methods full,lora,ia3 --max-train-examples 400 --max-eval-examples 150 --epochs 2 --max-length 64 --no-robustness}
mkdir -p "$OUT_ROOT"
index=0
for data in rotten_tomatoes "$DATA_DIR"/*.json; do
  index=$((index + 1))
  [ $(((index - 1) % LANES)) -eq "$LANE" ] || continue
  name=$(basename "$data" .json)
  echo "== $name $(date +%T)"
  $PEFTLAB compare --data "$data" $FLAGS --out "$OUT_ROOT/$name" > "$OUT_ROOT/$name.log" 2>&1
  echo "   rc=$? $(date +%T)"
done
