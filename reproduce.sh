#!/usr/bin/env bash
# The main job: set up .venv, then execute the notebook suite with papermill, in order.
# Usage: bash reproduce.sh [quick|paper|full|tiny|amazon] [--plan]
#   --plan: print what the run would train per notebook (RL runs, rankers, how many cached) and its
#           projected wall time on this machine (python -m adagrpo_core.cli plan); trains nothing
#   quick (default): every notebook on the simulated world, CPU, reduced grids (15 minutes on 2 cores)
#   paper: the full grids, and notebook 08 a second time with its reliability set (-p gates reliability);
#   full: the large world (CUDA when present); tiny: a smoke run
#   amazon: Amazon Beauty (files from $ADAGRPO_AMAZON_DIR or a verified download): the SFT policy
#           against SASRec and most popular, then notebooks 02, 03 (13 methods, among them random at
#           AdaGRPO's mean rate, pure GRPO and the exposure gate with its random control; the SASRec
#           reward contrast) and 06; under 3 hours on 2 cores with the SFT base cached. 01, 07 and
#           08 are skipped (they need the simulated world's true utility), 04 and 05 too (hours more
#           of runs on a CPU machine: run them by hand with -p profile amazon)
# Notebook 09 (Coat: real users, randomly assigned ratings; figures/coat/) runs with every profile when
# ADAGRPO_COAT_DIR names the Coat folder, and is skipped with a message otherwise.
# Executed notebooks land in notebooks/executed/<profile>/ (a fresh folder each run) with an HTML
# copy of each and index.html (the answers, the key figures, links; its path is printed last);
# tables and figures in figures/<profile>/ (figures/amazon/ for Beauty). Last, the tables are checked
# against the committed ones (python -m adagrpo_core.cli check). The first failing notebook stops the run with
# a non-zero exit; its executed copy is kept. The profile is checked before any set-up: a bad one
# exits 2 at once.
set -euo pipefail
profile="${1:-quick}"
plan_only=0
if [ "$#" -eq 2 ] && [ "$2" = "--plan" ]; then
  plan_only=1
elif [ "$#" -gt 1 ]; then
  echo "reproduce.sh: takes one argument, the profile (quick, paper, full, tiny or amazon), and optionally --plan; got $# arguments: $*" >&2
  exit 2
fi
case "$profile" in
  quick|paper|full|tiny|amazon) ;;
  *)
    echo "reproduce.sh: unknown profile '$profile'; valid profiles: quick, paper, full, tiny, amazon" >&2
    exit 2 ;;
esac
cd "$(dirname "$0")"
bash scripts/setup_env.sh
if [ "$plan_only" -eq 1 ]; then     # what the run would train and how long it would take here; trains nothing
  exec .venv/bin/python -m adagrpo_core.cli plan --profile "$profile"
fi
run_dir="notebooks/executed/$profile"
rm -rf "$run_dir"                 # a fresh folder: never a mix of old and new executed notebooks
mkdir -p "$run_dir"
total_start=$SECONDS
timings=()
if [ "$profile" = "amazon" ]; then
  start=$SECONDS
  echo "[reproduce] the SFT policy, SASRec and most popular on Amazon Beauty; the ranker"
  if ! .venv/bin/python -m adagrpo_core.cli reproduce --profile amazon; then
    echo "[reproduce] FAILED: python -m adagrpo_core.cli reproduce --profile amazon" >&2
    exit 1
  fi
  timings+=("reference models: $((SECONDS - start)) s")
fi
for nb in notebooks/[0-9]*.ipynb; do
  name="$(basename "$nb")"
  if [ "$profile" = "amazon" ]; then
    case "$name" in
      01_*|07_*|08_*) echo "[reproduce] skipping $name: it needs the simulated world's true utility, which a real dataset does not have"; continue ;;
      04_*|05_*) echo "[reproduce] skipping $name: hours more of runs on a CPU machine (notebook 03 has the gates that apply to real data); run it by hand: papermill $nb out.ipynb -p profile amazon"; continue ;;
    esac
  fi
  params=(-p profile "$profile")
  case "$name" in
    09_*)
      if [ -z "${ADAGRPO_COAT_DIR:-}" ]; then
        echo "[reproduce] skipping $name: it needs the Coat files; set ADAGRPO_COAT_DIR to their folder to run it"
        continue
      fi
      params=() ;;          # real users whatever the profile: the notebook reads $ADAGRPO_COAT_DIR, takes no profile
  esac
  passes=("")
  # notebook 08's reliability set (answers (i) and (j)) is a second pass on the paper and full profiles
  # (suite/plan.py, passes(): the planner counts the same passes)
  if [ "${name%%_*}" = "08" ] && { [ "$profile" = "paper" ] || [ "$profile" = "full" ]; }; then
    passes=("" "reliability")
  fi
  for gates in "${passes[@]}"; do
    out="$run_dir/$name"
    extra=()
    if [ -n "$gates" ]; then
      out="$run_dir/${name%.ipynb}_$gates.ipynb"
      extra=(-p gates "$gates")
    fi
    echo "[reproduce] $nb (profile=$profile${gates:+, gates=$gates})"
    start=$SECONDS
    if ! .venv/bin/papermill "$nb" "$out" ${params[@]+"${params[@]}"} ${extra[@]+"${extra[@]}"} --cwd notebooks --kernel python3; then
      echo "[reproduce] FAILED: $nb after $((SECONDS - start)) s; the executed notebook is kept at $out" >&2
      exit 1
    fi
    timings+=("$(basename "$out"): $((SECONDS - start)) s")
    echo "[reproduce] $(basename "$out") done in $((SECONDS - start)) s"
  done
done
echo "[reproduce] wall time per notebook:"
for t in "${timings[@]}"; do echo "  $t"; done
echo "[reproduce] done in $((SECONDS - total_start)) s in total: tables and figures in figures/$([ "$profile" = tiny ] && echo smoke || echo "$profile")/, executed notebooks in $run_dir/"
# Does the run reproduce the committed tables? Identical on the CPU kind that made them; on another
# kind every value with an interval should lie inside the combined interval of the two.
# The run's page: the answers, the key figures, every executed notebook as HTML (printed last).
page="$(.venv/bin/python -m adagrpo_core.suite.report "$run_dir" "$profile")"
echo "[reproduce] the tables against the committed ones (python -m adagrpo_core.cli check --profile $profile):"
check=0
.venv/bin/python -m adagrpo_core.cli check --profile "$profile" || check=$?
if [ "$check" -ne 0 ]; then
  echo "[reproduce] FAILED: more values fall outside the committed intervals than a regeneration on another CPU kind should give" >&2
fi
echo "[reproduce] the answers recomputed from this run's tables beside the committed ones (python -m adagrpo_core.cli check --answers):"
.venv/bin/python -m adagrpo_core.cli check --answers || check=$?
echo "[reproduce] the run's page: $page"
exit "$check"
