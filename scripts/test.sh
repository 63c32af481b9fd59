#!/usr/bin/env bash
# The test command: system packages, release build, a smoke run of the benchmark, the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release
./.build/release/gen bench kernels --smoke
./.build/release/gen bench generation --smoke
./.build/release/gen bench training --smoke
./.build/release/gen bench tokenizer --smoke
swift test
# Fuzz smoke run: every libFuzzer target of Fuzz/ for a few seconds (proves the harnesses build
# and run; the 10-minute runs are `scripts/fuzz.sh 600`, results in Fuzz/RESULTS.md).
scripts/fuzz.sh 3
