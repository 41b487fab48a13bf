#!/usr/bin/env bash
# The main job on the embedded default: distil the packaged English BERT (6 layers) into a
# 3-layer student on packaged English text, and print teacher vs student metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/distilx demo "$@"
