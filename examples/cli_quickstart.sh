#!/usr/bin/env bash
# The command line end to end: train, look, resume, sample, report.
#   bash examples/cli_quickstart.sh                 # built-in shapes, a few minutes on 2 cores
#   DATA=../shared/data/faces128 bash examples/cli_quickstart.sh
#   STEPS=20 WIDTH=8 bash examples/cli_quickstart.sh   # a smoke run in seconds
set -euo pipefail
STEPS=${STEPS:-300}
WIDTH=${WIDTH:-32}
OUT=${OUT:-runs/cli-example}
DATA_ARGS=()
[ -n "${DATA:-}" ] && DATA_ARGS=(--data "$DATA")

rm -rf "$OUT"
# 1. Train half the steps; curves.png and evolution.png appear in the run as it goes.
ganzoo train --arch conv32 "${DATA_ARGS[@]}" --steps $((STEPS / 2)) --batch-size 32 \
    --sample-every $((STEPS / 6 > 0 ? STEPS / 6 : 1)) --sched noise-anneal \
    -o conv32.width="$WIDTH" --out "$OUT" -q
# 2. Extend the same run to the full length (bit-exact continuation on CPU).
ganzoo train --resume "$OUT" --steps "$STEPS" -q
# 3. New samples from the latest checkpoint: a grid and a uint8 array.
ganzoo sample "$OUT" -n 16 --seed 1 --out "$OUT/cli-samples.png"
ganzoo sample "$OUT" -n 16 --seed 1 --out "$OUT/cli-samples.npy"
# 4. One self-contained HTML page about the run.
ganzoo report "$OUT" --out "$OUT/report.html"
ls "$OUT"
