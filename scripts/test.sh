#!/usr/bin/env bash
# The test command: system packages, release build, smoke runs of the benchmarks, the fuzz targets
# and the CLI mutation run, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release
./.build/release/gen bench kernels --smoke
./.build/release/gen bench attention --smoke
./.build/release/gen bench generation --smoke
./.build/release/gen bench training --smoke
./.build/release/gen bench tokenizer --smoke
# Fuzz smoke run: every libFuzzer target of Fuzz/ for a few seconds (proves the harnesses build
# and run; the 10-minute runs are `scripts/fuzz.sh 600`, results in Fuzz/RESULTS.md).
scripts/fuzz.sh 3
# Mutation smoke run through the CLI (the full run is `scripts/mutate.sh 1000`).
scripts/mutate.sh 60
swift test
