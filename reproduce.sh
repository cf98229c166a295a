#!/usr/bin/env bash
# The main job: set up .venv, then execute the notebook suite with papermill, in order.
# Usage: bash reproduce.sh [quick|paper|full|tiny]   (quick = default, CPU; paper = the numbers of RESULTS.md;
#        full uses CUDA when present; tiny = a smoke run)
# Executed notebooks land in notebooks/executed/<profile>/ (a fresh folder each run); tables and
# figures in figures/. The first failing notebook stops the run with a non-zero exit; its executed
# copy is kept. The profile is checked before any set-up: a bad one exits 2 at once.
set -euo pipefail
profile="${1:-quick}"
if [ "$#" -gt 1 ]; then
  echo "reproduce.sh: takes one argument, the profile (quick, paper, full or tiny); got $# arguments: $*" >&2
  exit 2
fi
case "$profile" in
  quick|paper|full|tiny) ;;
  amazon)
    echo "reproduce.sh: profile 'amazon' runs through the CLI, not the notebooks (they need the simulated world's true utility): python -m adagrpo_core.cli reproduce --profile amazon, then python -m adagrpo_core.cli stratified --profile amazon" >&2
    exit 2 ;;
  *)
    echo "reproduce.sh: unknown profile '$profile'; valid profiles: quick, paper, full, tiny" >&2
    exit 2 ;;
esac
cd "$(dirname "$0")"
bash scripts/setup_env.sh
run_dir="notebooks/executed/$profile"
rm -rf "$run_dir"                 # a fresh folder: never a mix of old and new executed notebooks
mkdir -p "$run_dir"
total_start=$SECONDS
timings=()
for nb in notebooks/[0-9]*.ipynb; do
  out="$run_dir/$(basename "$nb")"
  echo "[reproduce] $nb (profile=$profile)"
  start=$SECONDS
  if ! .venv/bin/papermill "$nb" "$out" -p profile "$profile" --cwd notebooks --kernel python3; then
    echo "[reproduce] FAILED: $nb after $((SECONDS - start)) s; the executed notebook is kept at $out" >&2
    exit 1
  fi
  timings+=("$(basename "$nb"): $((SECONDS - start)) s")
  echo "[reproduce] $(basename "$nb") done in $((SECONDS - start)) s"
done
echo "[reproduce] wall time per notebook:"
for t in "${timings[@]}"; do echo "  $t"; done
echo "[reproduce] done in $((SECONDS - total_start)) s in total: tables and figures in figures/, executed notebooks in $run_dir/"
