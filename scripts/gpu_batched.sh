#!/usr/bin/env bash
# The batched-runs check on one GPU, as plain scripts (no Jupyter), run once; logs go to $OUT.
#  1. how large a batch of runs fits, and the cost per run of a step as K grows;
#  2. runs per hour, per-run path (each run alone) against batches of K, 8 seeds x nll, mix(1),
#     adagrpo, paper profile;
#  3. notebook 08's bias dial, main set (5 values x 6 methods) at ten seeds, in batches of ten,
#     timed from an empty run folder (the world, SFT base and ranker are built first, untimed).
#   bash scripts/gpu_batched.sh            (K=${K:-16} for step 2, JOBS=${JOBS:-2} processes)
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 ADAGRPO_CACHE=${ADAGRPO_CACHE:-/tmp/adagrpo_cache}
PY=${PY:-python3}
$PY -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())" | tee "$OUT/env.txt"
$PY benchmarks/batch_capacity.py --profile paper --device cuda --ks 1 8 32 128 512 1024 2>&1 | tee "$OUT/batch_capacity_cuda.txt"
$PY benchmarks/bench_runs.py --profile paper --seeds 8 --batch "${K:-16}" --jobs "${JOBS:-2}" --device cuda 2>&1 \
    | tee "$OUT/bench_runs_cuda.txt"
rm -rf /tmp/adagrpo_runs_nb08
/usr/bin/time -v $PY scripts/answer_seeds.py --profile paper --only nb08_bias --batch 10 --jobs "${JOBS:-2}" \
    --runs /tmp/adagrpo_runs_nb08 2>&1 | tr "\r" "\n" | grep -v "it/s\]$" | tail -40 | tee "$OUT/nb08_bias_10seeds_cuda.log"
