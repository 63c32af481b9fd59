#!/usr/bin/env bash
# Measures data-parallel training on this machine: 2 ranks x 1 thread against 1 process x 2
# threads with the same global batch, SiT and tokenizer on Fashion-MNIST, in interleaved pairs,
# and draws the loss curves of the first pair into docs/mpi-loss-curves.png. Prints steps/s per
# run and the efficiency (2 ranks against 1 process). Takes about 10 minutes on 2 cores.
#   scripts/mpi-scaling.sh [work folder] [pairs]
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/mpi-scaling}
PAIRS=${2:-3}
G=$PWD/.build/release/gen
MPI="mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2"
mkdir -p "$W"
lscpu | grep -E "^Model name|^CPU\(s\)" || true

# The latent cache of the shipped tokenizer (10,000 images), made once.
[ -f "$W/lat.h5" ] || $G precompute --tokenizer Checkpoints/fashion-tokenizer --dataset fashion-mnist --limit 10000 --out "$W/lat.h5" --threads 2

SIT="--cache $W/lat.h5 --hidden 256 --depth 6 --heads 4 --batch-size 64 --lr 5e-4 --warmup 200 --log-every 10 --save-every 100000"
TOK="--dataset fashion-mnist --preset fashion32 --width 128 --depth 3 --heads 2 --tokens 32 --batch-size 32 --lr 1.2e-3 --warmup 100 --log-every 10 --save-every 100000"

# steps/s of a run: steps done over the time the loop took (the last log record).
rate() { python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1]+'/log.jsonl')][-1]; print('%.3f' % (r['step']/r['elapsed_s']))" "$1"; }

for i in $(seq 1 "$PAIRS"); do
    steps=$([ "$i" -eq 1 ] && echo 300 || echo 100)
    for model in sit tok; do
        if [ $model = sit ]; then cmd="train $SIT"; else cmd="train-tokenizer $TOK"; fi
        rm -rf "$W/$model-1x2-$i" "$W/$model-2x1-$i"
        $G $cmd --steps $steps --out "$W/$model-1x2-$i" --threads 2 > /dev/null 2>&1
        $MPI $G $cmd --steps $steps --out "$W/$model-2x1-$i" --threads 1 > /dev/null 2>&1
        a=$(rate "$W/$model-1x2-$i"); b=$(rate "$W/$model-2x1-$i")
        python3 -c "import sys; a,b=float(sys.argv[2]),float(sys.argv[3]); print('%s pair %s (%s steps): 1 process x 2 threads %.3f steps/s, 2 ranks x 1 thread %.3f steps/s, ratio %.3f' % (sys.argv[1], sys.argv[4], sys.argv[5], a, b, b/a))" $model $a $b $i $steps
    done
done
$G plot-runs "SiT, 1 process x 2 threads=$W/sit-1x2-1" "SiT, 2 ranks x 1 thread=$W/sit-2x1-1" \
    "tokenizer, 1 process x 2 threads=$W/tok-1x2-1:reconstruction" "tokenizer, 2 ranks x 1 thread=$W/tok-2x1-1:reconstruction" \
    --title "global batch 64 (SiT) / 32 (tokenizer)" --out docs/mpi-loss-curves.png
# The gradient sum alone: shared memory between 2 ranks, 30 MB (the Fashion SiT) and 256 MB.
for mb in 30 256; do $MPI $G bench allreduce --megabytes $mb --repeats 5; done
