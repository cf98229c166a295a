#!/usr/bin/env bash
# The main job: set up .venv, then build the default simulated world and the core artefacts.
# Usage: bash reproduce.sh [quick|full]     (quick = default, CPU)
set -euo pipefail
cd "$(dirname "$0")"
profile="${1:-quick}"
bash scripts/setup_env.sh
exec .venv/bin/python -m adagrpo_core.cli reproduce --profile "$profile"
