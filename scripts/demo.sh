#!/usr/bin/env bash
# Set up (idempotent) and run the demo on the shipped defaults; results go to out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/audioforge demo --out out/demo "$@"
