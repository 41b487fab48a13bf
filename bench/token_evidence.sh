#!/usr/bin/env bash
# bench/token_evidence.py with its nine student runs as parallel processes (each a fair share of a shared
# CPU), after the teacher is fine-tuned and cached; then merged. Usage: bench/token_evidence.sh OUT.json [flags]
set -euo pipefail
out=$1; shift
parts=$(mktemp -d)
python bench/token_evidence.py --teacher-only "$@"
pids=()
for seed in 0 1 2; do
  for variant in a b c; do
    python bench/token_evidence.py --seeds "$seed" --variants "$variant" --json "$parts/part-$variant$seed.json" "$@" \
      > "$parts/log-$variant$seed.txt" 2>&1 &
    pids+=($!)
  done
done
for pid in "${pids[@]}"; do wait "$pid"; done
cat "$parts"/log-*.txt
python bench/token_evidence.py --merge "$parts"/part-*.json --json "$out"
