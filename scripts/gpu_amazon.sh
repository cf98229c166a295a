#!/usr/bin/env bash
# Amazon Beauty on a GPU machine (plain scripts, no Jupyter): dataset + semantic IDs + SFT + SASRec + ranker
# (reproduce --profile amazon), then the stratified analysis. Needs the three Beauty files in
# $ADAGRPO_AMAZON_DIR (default ./.amazon, an ignored folder) or internet access for the download.
# Writes logs, the tables (amazon_tables.tgz) and the trained SFT/ranker (amazon_models.tgz) to $OUT.
#   bash scripts/gpu_amazon.sh
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export ADAGRPO_CACHE=${ADAGRPO_CACHE:-/tmp/adagrpo_cache} ADAGRPO_AMAZON_DIR=${ADAGRPO_AMAZON_DIR:-$PWD/.amazon}
PY=${PY:-python3}; FIG=$(mktemp -d)
clean() { sed 's/\r/\n/g' | grep -v 'it/s\]$' | grep -v '^\s*$'; }
( time $PY -m adagrpo_core.cli --out "$FIG" reproduce --profile amazon ) 2>&1 | clean | tail -70 > "$OUT/amazon_reproduce.log"
tar czf "$OUT/amazon_models.tgz" -C "$ADAGRPO_CACHE" sft rankers
( time $PY -m adagrpo_core.cli --out "$FIG" stratified --profile amazon ) 2>&1 | clean | tail -90 > "$OUT/amazon_stratified.log"
tar czf "$OUT/amazon_tables.tgz" -C "$FIG" .
tail -25 "$OUT/amazon_reproduce.log"; tail -40 "$OUT/amazon_stratified.log"
