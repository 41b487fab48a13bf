#!/usr/bin/env bash
# The main job on the embedded default: `distilx demo` — both of DistilBERT's stages on the packaged
# all-MiniLM-L6-v2 and packaged text (pre-training distillation; a classifier fine-tuned by distilx
# finetune, distilled), ending with the run's numbers beside the paper's claims. Arguments go to
# `distilx demo` (e.g. --stage pretrain|task|both).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/distilx demo "$@"
