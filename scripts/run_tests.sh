#!/usr/bin/env bash
# The test command: set up .venv, then run the whole suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest -q "$@"
