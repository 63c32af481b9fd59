#!/usr/bin/env bash
# The test suite under the sanitizers, each in its own scratch path (the normal build is untouched):
#
#   scripts/sanitize.sh asan   AddressSanitizer over the Tensor, SiT, Tokenizer and Pipeline tests
#                              (ASAN_FILTER=<regex> to choose others; GenTests spawn gen and take long)
#   scripts/sanitize.sh tsan   ThreadSanitizer over the parallel kernels (TensorTests)
#   scripts/sanitize.sh        both
#
# FUZZ_BUILD_LOCK=<file> runs the builds and test runs under flock (shared machines). What the
# runs reported, and why, is in Fuzz/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
locked() { if [ -n "${FUZZ_BUILD_LOCK:-}" ]; then flock "$FUZZ_BUILD_LOCK" "$@"; else "$@"; fi; }
mkdir -p .build/sanitize-logs
status=0

if [ "$what" = asan ] || [ "$what" = all ]; then
    filter=${ASAN_FILTER:-"^(TensorTests|SiTTests|TokenizerTests|PipelineTests)\\."}
    locked swift build --build-tests --scratch-path .build/asan --sanitize=address 2>&1 | tail -3
    # Leak checking is off: the goal is memory safety (overflows, use after free); the Swift
    # runtime's and Foundation's process-lifetime caches would be reported as leaks at exit.
    set +e
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 SWIFT_BACKTRACE=enable=no \
        locked swift test --skip-build --scratch-path .build/asan --sanitize=address --filter "$filter" \
        > .build/sanitize-logs/asan.log 2>&1
    rc=$?
    set -e
    grep -E "Executed [0-9]+ tests|ERROR: AddressSanitizer|SUMMARY: AddressSanitizer" .build/sanitize-logs/asan.log | tail -4
    echo "asan: exit $rc, $(grep -c 'ERROR: AddressSanitizer' .build/sanitize-logs/asan.log || true) reports (log .build/sanitize-logs/asan.log)"
    [ "$rc" -eq 0 ] || status=1
fi

if [ "$what" = tsan ] || [ "$what" = all ]; then
    # CKernels picks its ISA clones through IFUNC resolvers, which the dynamic loader runs before
    # the TSan runtime is up; instrumented function entry/exit there segfaults at load time (every
    # C function keeps its memory-access instrumentation, only the entry/exit hooks go).
    TSAN_C=(-Xcc -mllvm -Xcc -tsan-instrument-func-entry-exit=0)
    locked swift build --build-tests --scratch-path .build/tsan --sanitize=thread "${TSAN_C[@]}" 2>&1 | tail -3
    # OpenBLAS is not instrumented and synchronizes its own threads with spin waits TSan cannot
    # see; with one BLAS thread only the package's own parallel kernels (Threading.swift) run
    # concurrently, which is what this run checks.
    set +e
    OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=0 SWIFT_BACKTRACE=enable=no \
        locked swift test --skip-build --scratch-path .build/tsan --sanitize=thread "${TSAN_C[@]}" --filter "${TSAN_FILTER:-^TensorTests\\.}" \
        > .build/sanitize-logs/tsan.log 2>&1
    rc=$?
    set -e
    grep -E "Executed [0-9]+ tests|WARNING: ThreadSanitizer|SUMMARY: ThreadSanitizer" .build/sanitize-logs/tsan.log | sort | uniq -c | tail -8
    echo "tsan: exit $rc, $(grep -c 'WARNING: ThreadSanitizer' .build/sanitize-logs/tsan.log || true) reports (log .build/sanitize-logs/tsan.log)"
    [ "$rc" -eq 0 ] || status=1
fi
exit $status
