#!/usr/bin/env bash
# The test command: set up .venv, then run the whole suite in three worker processes (pytest-xdist:
# on 2 cores three beat two and four, benchmarks/results/test_suite_cpu.md;
# ADAGRPO_TEST_WORKERS overrides, 0 runs it in this process).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
workers="${ADAGRPO_TEST_WORKERS:-3}"
if [ "$workers" = "0" ]; then
  exec .venv/bin/python -m pytest -q "$@"
fi
exec .venv/bin/python -m pytest -q -n "$workers" "$@"
