#!/usr/bin/env bash
# Every test: the Rust core (cargo test, no Python) and the Python suite (pytest).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k masking`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Real assets for the Rust tests (the Python tests find them through distilx.assets).
export DISTILX_TEST_TOKENIZER_JSON=$(.venv/bin/python -c "from distilx import assets; print(assets.minilm_tokenizer_json())")
export DISTILX_TEST_CORPUS=$(.venv/bin/python -c "from distilx import assets; print(assets.english_corpus()[0])")
# Build the Rust tests first with a progress line every few seconds (the first build takes minutes);
# --release reuses the dependency builds of the extension instead of compiling them a second time.
source scripts/progress.sh
progress "test: cargo (building the Rust tests)" target/.distilx-test-build.log cargo test --release --no-run ||
  { cat target/.distilx-test-build.log >&2; exit 1; }
cargo test --release --quiet
.venv/bin/python -m pytest -q "$@"
