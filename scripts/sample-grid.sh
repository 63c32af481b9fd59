#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing, builds gen, and writes a
# class-conditional Fashion-MNIST sample grid from the shipped checkpoints.
#   scripts/sample-grid.sh [output-folder]      (default: samples/fashion)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s.%N)
scripts/install-deps.sh
swift build -c release --product gen 2>&1 | tail -1
t1=$(date +%s.%N)
out=${1:-samples/fashion}
./.build/release/gen sample --sit Checkpoints/fashion-sit --tokenizer Checkpoints/fashion-tokenizer \
    --per-class 8 --sampler heun --steps 20 --cfg 1.75 --guidance-high 0.7 --seed 0 --out "$out" --overwrite
t2=$(date +%s.%N)
printf 'Sample grid: %s/grid.png (every class, 8 samples each; one PNG per image beside it)\n' "$out"
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "Took %.1f s: setup and build %.1f s, sampling %.1f s.\n", c - a, b - a, c - b }' 
