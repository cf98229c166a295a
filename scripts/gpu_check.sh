#!/usr/bin/env bash
# One short GPU check (plain scripts, no Jupyter): the package's tests under the machine's torch,
# the decoding and step benchmarks on CUDA, then the quick-profile methods table for one seed
# on CUDA (SEEDS="0 1 2" for more seeds). Logs and tables go to $OUT (default ./gpu_out).
#   bash scripts/gpu_check.sh
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 ADAGRPO_CACHE=${ADAGRPO_CACHE:-/tmp/adagrpo_cache}
PY=${PY:-python3}
$PY -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')" | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$OUT/env.txt" 2>&1
$PY -m pytest -q -x -p no:cacheprovider --ignore=tests/test_notebooks.py tests 2>&1 | tail -5 | tee -a "$OUT/env.txt"
$PY benchmarks/bench_decoding.py --device cuda --repeats 5 2>&1 | tee "$OUT/bench_decoding_cuda.txt"
$PY benchmarks/bench_step.py --device cuda 2>&1 | tee "$OUT/bench_step_cuda.txt"
time $PY -m adagrpo_core.cli --out "$OUT" main-results --profile quick --seeds ${SEEDS:-0} \
    --runs /tmp/adagrpo_runs 2>&1 | tr "\r" "\n" | grep -v "it/s\]$" | tail -80 | tee "$OUT/main_results_cuda.log"
