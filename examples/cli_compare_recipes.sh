#!/usr/bin/env bash
# Run some of the seeds' recipes for the same number of steps and compare them on one page.
#   DATA=../shared/data/faces128 bash examples/cli_compare_recipes.sh
#   STEPS=20 WIDTH=8 bash examples/cli_compare_recipes.sh    # a smoke run
# Every recipe is retargeted to conv32 at the same width so the comparison is about training,
# not network size. `ganzoo recipes` lists them all; docs/recipes.md explains each.
set -euo pipefail
STEPS=${STEPS:-600}
WIDTH=${WIDTH:-32}
OUT=${OUT:-runs/compare-recipes}
RECIPES=${RECIPES:-"face-model5-baseline face-model6-dropout face-model7-noise face-modern"}
DATA_ARGS=()
[ -n "${DATA:-}" ] && DATA_ARGS=(--data "$DATA")

runs=()
for recipe in $RECIPES; do
    rm -rf "$OUT/$recipe"
    ganzoo train --recipe "$recipe" --arch conv32 "${DATA_ARGS[@]}" --steps "$STEPS" \
        --batch-size 32 --sample-every $((STEPS / 5 > 0 ? STEPS / 5 : 1)) \
        -o conv32.width="$WIDTH" --out "$OUT/$recipe" -q
    runs+=("$OUT/$recipe")
done
ganzoo report "${runs[@]}" --out "$OUT/compare.html" --title "seed recipes, $STEPS steps each"
