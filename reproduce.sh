#!/usr/bin/env bash
# The main job: set up .venv, then execute the notebook suite with papermill, in order.
# Usage: bash reproduce.sh [quick|full|tiny]     (quick = default, CPU; full uses CUDA when present)
# Executed notebooks land in notebooks/executed/; tables and figures in figures/.
# The first failing notebook stops the run with a non-zero exit; its executed copy is kept.
set -euo pipefail
cd "$(dirname "$0")"
profile="${1:-quick}"
bash scripts/setup_env.sh
mkdir -p notebooks/executed
for nb in notebooks/[0-9]*.ipynb; do
  out="notebooks/executed/$(basename "$nb")"
  echo "[reproduce] $nb (profile=$profile)"
  if ! .venv/bin/papermill "$nb" "$out" -p profile "$profile" --cwd notebooks --kernel python3; then
    echo "[reproduce] FAILED: $nb; the executed notebook is kept at $out" >&2
    exit 1
  fi
done
echo "[reproduce] done: tables and figures in figures/"
