#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/ (swiftc -sanitize=fuzzer,address over the package's
# modules, themselves compiled with the same instrumentation) and runs each for a fixed time
# with a seed corpus made from the shipped files.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 20 s each, every target
#   scripts/fuzz.sh 600                       the 10-minute runs recorded in Fuzz/RESULTS.md
#
# Targets: safetensors sitconfig tokconfig idx latentcache imageheader (see Fuzz/Main.swift).
# A crashing input is copied to Fuzz/regressions/<target>/ (replayed by the test suite) and the
# script exits 1. The final libFuzzer stats of each run go to .build/fuzz/logs/<target>.log and
# one summary line per target to stdout. FUZZ_BUILD_LOCK=<file> runs the compiles under flock.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(safetensors sitconfig tokconfig idx latentcache imageheader)
SCRATCH=.build/fuzz
DEBUG=$SCRATCH/debug
BIN=$SCRATCH/bin/fuzz
locked() { if [ -n "${FUZZ_BUILD_LOCK:-}" ]; then flock "$FUZZ_BUILD_LOCK" "$@"; else "$@"; fi; }

# 1. The package's modules with coverage and AddressSanitizer instrumentation (own scratch path,
#    so the normal build is untouched).
for target in Datasets SiT Tokenizer; do
    locked swift build --scratch-path "$SCRATCH" --sanitize=fuzzer --sanitize=address --target "$target" 2>&1 \
        | grep -E "error|warning: unre|Compiling|complete" | tail -3
done

# 2. One fuzz binary (FUZZ_TARGET picks the parser).
mkdir -p "$SCRATCH/bin"
OBJECTS=()
for m in Tensor SiT Tokenizer Formats Datasets CKernels CPNG; do OBJECTS+=("$DEBUG/$m.build"/*.o); done
CFLAGS=()
for map in Sources/CBLAS/module.modulemap Sources/CDNNL/module.modulemap Sources/CHDF5/module.modulemap Sources/CTurboJPEG/module.modulemap \
           Sources/CZlib/module.modulemap "$DEBUG/CKernels.build/module.modulemap" "$DEBUG/CPNG.build/module.modulemap"; do
    CFLAGS+=(-Xcc "-fmodule-map-file=$map")
done
for inc in Sources/CKernels/include Sources/CPNG/include; do CFLAGS+=(-Xcc -I -Xcc "$inc"); done
# shellcheck disable=SC2046
locked swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name FuzzTargets \
    Fuzz/*.swift -I "$DEBUG/Modules" "${CFLAGS[@]}" $(pkg-config --cflags openblas hdf5) \
    "${OBJECTS[@]}" $(pkg-config --libs openblas hdf5 libturbojpeg zlib) -ldnnl -lgomp -lpng16 -lm -o "$BIN" 2>&1 \
    | { grep -v "Cannot export local symbol" || true; }   # gold's notes about ASan's local helpers

# 3. Seeds: shipped files, the targets' own synthetic seeds, and earlier crashes.
seeds() {
    local t=$1 dir=$SCRATCH/seeds/$1
    rm -rf "$dir"; mkdir -p "$dir"
    FUZZ_TARGET=$t FUZZ_SEED_DIR=$dir "$BIN" -runs=0 "$dir" >/dev/null 2>&1 || true
    case $t in
    safetensors)
        # Each shipped checkpoint's header with the first 4 KB of data (a truncated copy).
        for f in Checkpoints/*/model.safetensors Tests/Fixtures/*/*.safetensors; do
            python3 - "$f" "$dir/$(echo "$f" | tr / _)" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', data[:8])[0]
open(sys.argv[2], 'wb').write(data[:8 + n + 4096])
PY
        done ;;
    sitconfig) cp Checkpoints/fashion-sit/config.json "$dir/fashion-sit.json"
               for f in Tests/Fixtures/sit_tiny_*/config.json; do cp "$f" "$dir/$(echo "$f" | tr / _)"; done ;;
    tokconfig) cp Checkpoints/fashion-tokenizer/config.json "$dir/fashion-tokenizer.json"
               cp Tests/Fixtures/tokenizer_tiny/config.json "$dir/tokenizer_tiny.json" ;;
    idx)
        # Mode byte 0 + the real Fashion-MNIST test labels (IDX1), when the package is installed.
        if [ -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
            { printf '\000'; gzip -dc /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz | head -c 2000 || true; } > "$dir/labels-prefix.idx"
            { printf '\002'; head -c 4000 /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz; } > "$dir/labels.gz"
        fi ;;
    imageheader) for f in Checkpoints/*/loss.png; do cp "$f" "$dir/$(echo "$f" | tr / _)"; done ;;
    esac
    if [ -d "Fuzz/regressions/$t" ]; then cp Fuzz/regressions/"$t"/* "$dir/" 2>/dev/null || true; fi
}

# 4. Run each target for SECS seconds.
mkdir -p "$SCRATCH/logs"
status=0
for t in "${TARGETS[@]}"; do
    seeds "$t"
    corpus=$SCRATCH/corpus/$t crashes=$SCRATCH/crashes/$t
    rm -rf "$crashes"; mkdir -p "$corpus" "$crashes"
    maxlen=4096; [ "$t" = safetensors ] && maxlen=65536; [ "$t" = imageheader ] && maxlen=16384
    dict=(); case $t in safetensors|sitconfig|tokconfig) dict=(-dict=Fuzz/dicts/json.dict) ;; esac
    log=$SCRATCH/logs/$t.log
    set +e
    # One BLAS thread: the targets run one input at a time, and OpenBLAS's worker threads spin in
    # sched_yield on a loaded machine (a tiny sgemm once took 11 s, reported as a timeout).
    FUZZ_TARGET=$t SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 OPENBLAS_NUM_THREADS=1 "$BIN" \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=$maxlen -print_final_stats=1 \
        "${dict[@]}" -artifact_prefix="$crashes/" "$corpus" "$SCRATCH/seeds/$t" > "$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    found=$(find "$crashes" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
    echo "fuzz $t: ${SECS} s, ${execs} execs, ${rate} execs/s, exit ${rc}, ${found} crashing inputs"
    if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
        status=1
        mkdir -p "Fuzz/regressions/$t"
        find "$crashes" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) \
            -exec cp {} "Fuzz/regressions/$t/" \;
        grep -E "ERROR|==ERROR|Fatal error|property violated|SUMMARY" "$log" | head -5 || true
    fi
done
exit $status
