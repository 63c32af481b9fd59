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
