#!/usr/bin/env bash
# Mutation run through the CLI (issue 17): copies of the shipped checkpoints and of a small latent
# cache are corrupted (byte flips, truncation, header overwrites, absurd numbers in config.json),
# and gen is run on each copy. A crash (a signal or trap), a hang (over the time limit) or any
# change to the originals fails the run; one clear error (exit 1 or 2) or success is fine.
#
#   scripts/mutate.sh [COUNT] [SEED]      (default 1000 mutated files, seed 1)
set -uo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000}
RANDOM=${2:-1}
gen=./.build/release/gen
[ -x "$gen" ] || { echo "build first: swift build -c release" >&2; exit 2; }
work=$(mktemp -d /tmp/gen-mutate-XXXXXX)
trap 'rm -rf "$work"' EXIT
limit=30

originals=(Checkpoints/fashion-sit/config.json Checkpoints/fashion-sit/model.safetensors
           Checkpoints/fashion-tokenizer/config.json Checkpoints/fashion-tokenizer/model.safetensors)
before=$(sha256sum "${originals[@]}")

# A small latent cache made with the shipped tokenizer (64 test images).
"$gen" precompute --tokenizer Checkpoints/fashion-tokenizer --dataset fashion-mnist:test --limit 64 \
    --out "$work/cache.h5" --threads 1 > /dev/null 2>&1 || { echo "cannot make the latent cache" >&2; exit 2; }

# flip FILE N: overwrite N random bytes of FILE (in its first 64 KiB, where headers live, or anywhere).
flip() {
    local file=$1 n=$2 size pos i span
    size=$(stat -c %s "$file")
    for ((i = 0; i < n; i++)); do
        span=$(( (RANDOM % 2 == 0 && size > 65536) ? 65536 : size ))
        pos=$(( (RANDOM * 32768 + RANDOM) % span ))
        printf "\\x$(printf %02x $((RANDOM % 256)))" | dd of="$file" bs=1 seek="$pos" conv=notrunc status=none
    done
}

# absurd FILE: replace one number of a JSON file by an absurd value.
absurd() {
    local file=$1 values=("0" "-1" "1e23" "9223372036854775807" "4611686018427387904" "256.5" "nan" "\"x\"" "[]" "null" "1e-30")
    local v=${values[$((RANDOM % ${#values[@]}))]} k=$((RANDOM % 12 + 1))
    K=$k V=$v perl -0pi -e 'my $n = 0; s/(:\s*)(-?[0-9][0-9.eE+-]*)/(++$n == $ENV{K}) ? "$1$ENV{V}" : "$1$2"/ge' "$file"
}

crashes=0 hangs=0 runs=0 ok=0 errors=0
check() {   # check STATUS WHAT
    runs=$((runs + 1))
    case $1 in
        0) ok=$((ok + 1)) ;;
        1|2) errors=$((errors + 1)) ;;
        124) hangs=$((hangs + 1)); echo "HANG: $2" ;;
        *) crashes=$((crashes + 1)); echo "CRASH (exit $1): $2"; cp -r "$3" "$work/../gen-mutate-crash-$runs" 2>/dev/null ;;
    esac
}

for ((m = 1; m <= count; m++)); do
    kind=$((m % 6))
    case $kind in
        0|1|2)   # a corrupted SiT or tokenizer checkpoint
            d="$work/m$m"; rm -rf "$d"; mkdir -p "$d"
            which=$([ $((RANDOM % 2)) -eq 0 ] && echo sit || echo tokenizer)
            cp Checkpoints/fashion-$which/config.json Checkpoints/fashion-$which/model.safetensors "$d/"
            case $kind in
                0) flip "$d/config.json" $((RANDOM % 4 + 1)) ;;
                1) absurd "$d/config.json" ;;
                2) if [ $((RANDOM % 2)) -eq 0 ]; then
                       truncate -s $(( (RANDOM * 32768 + RANDOM) % $(stat -c %s "$d/model.safetensors") )) "$d/model.safetensors"
                   else flip "$d/model.safetensors" $((RANDOM % 8 + 1)); fi ;;
            esac
            timeout $limit "$gen" info "$d" > /dev/null 2>&1; check $? "info on mutated $which ($kind) #$m" "$d"
            if [ "$which" = sit ]; then
                timeout $limit "$gen" sample --sit "$d" --tokenizer Checkpoints/fashion-tokenizer --classes 0 --per-class 1 \
                    --steps 1 --no-grid --threads 1 -o "$d/out" > /dev/null 2>&1
            else
                timeout $limit "$gen" reconstruct --tokenizer "$d" --count 2 --threads 1 --out "$d/r.png" > /dev/null 2>&1
            fi
            check $? "use of mutated $which ($kind) #$m" "$d"
            rm -rf "$d" ;;
        3|4|5)   # a corrupted latent cache
            c="$work/c$m.h5"; cp "$work/cache.h5" "$c"
            if [ $kind -eq 5 ]; then truncate -s $(( (RANDOM * 32768 + RANDOM) % $(stat -c %s "$c") )) "$c"
            else flip "$c" $((RANDOM % 16 + 1)); fi
            timeout $limit "$gen" info "$c" > /dev/null 2>&1; check $? "info on mutated cache #$m" "$c"
            timeout $limit "$gen" train --cache "$c" --out "$work/run$m" --steps 1 --hidden 32 --depth 1 --heads 2 \
                --batch-size 8 --threads 1 > /dev/null 2>&1
            check $? "train on mutated cache #$m" "$c"
            rm -rf "$c" "$work/run$m" ;;
    esac
done

after=$(sha256sum "${originals[@]}")
changed=0
[ "$before" = "$after" ] || { changed=1; echo "ORIGINALS CHANGED"; }
echo "$count mutated files, $runs gen runs: $ok succeeded, $errors clear errors, $crashes crashes, $hangs hangs; originals changed: $changed"
[ $crashes -eq 0 ] && [ $hangs -eq 0 ] && [ $changed -eq 0 ]
