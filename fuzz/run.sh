#!/usr/bin/env bash
# Fuzz the fast WordPiece path against the tokenizers crate with libFuzzer, on stable Rust:
# the same coverage flags `cargo fuzz` passes, without needing nightly or cargo-fuzz itself.
#   bash fuzz/run.sh [SECONDS]      (default 60; crashes land in fuzz/artifacts/)
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_TO_RUN=${1:-60}
export DISTILX_TEST_TOKENIZER_JSON=${DISTILX_TEST_TOKENIZER_JSON:-$(../.venv/bin/python -c "from distilx import assets; print(assets.minilm_tokenizer_json())")}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps RUSTFLAGS off build scripts (they must link without libFuzzer).
TARGET=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --target "$TARGET" --bin wordpiece_vs_tokenizers
mkdir -p corpus/wordpiece artifacts
# Seed with a few real lines so the fuzzer starts from text that reaches deep paths.
if [ -z "$(ls -A corpus/wordpiece)" ]; then
  CORPUS=$(../.venv/bin/python -c "from distilx import assets; print(assets.english_corpus()[1])")
  head -c 200000 "$CORPUS" | split -l 1 - corpus/wordpiece/seed_
fi
./target/"$TARGET"/release/wordpiece_vs_tokenizers corpus/wordpiece -artifact_prefix=artifacts/ \
  -max_total_time="$SECONDS_TO_RUN" -max_len=512 -print_final_stats=1
