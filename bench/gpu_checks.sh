#!/usr/bin/env bash
# The prepared run for a lent GPU machine (H100/H200; Python 3.12, torch 2.11, triton 3.6, transformers 5.17,
# no network): ONE call runs every GPU part of the project in <= 8 minutes on an H100 (a global budget of
# 470 s; each step has its own limit, cut to what is left), prints ONE summary table last, and brings back
# three files: $OUT/gpu_results.txt (the whole log), $OUT/gpu_results.json (every step's JSON, bundled: the
# device tool returns at most 8 files) and $OUT/tuned_configs.json (the kernel table to commit).
#
# Steps, in order of value (expected seconds on an H100, limit):
#   1. tests/test_kernel_gpu.py: the loss kernels (rowwise, stream, split) at real sizes + run-time tuning  (60, 120)
#   2. bench/tune_loss_kernels.py: copy bandwidth, the kernel configurations at N=16384, V 30522/128256/250002,
#      old vs new; the winners into this machine's cache (--install) for the steps below                 (65, 110)
#   3. bench/gpu_train.py: distilx vs Trainer + tutorial KD loss vs the research loop, 3 models x {128, 512},
#      largest batch per side                                                                              (150, 175)
#   4. bench/bench_loss.py: N=16384, V 30522/128256/250002: distilx vs eager vs Liger's KL + CE            (30, 75)
#   5. tests/test_fused_linear_gpu.py                                                                        (10, 60)
#   6. bench/bench_fused_linear.py: fused-linear vs logits (N 8192/16384, V 250002) and vs
#      LigerFusedLinearJSDLoss at equal work (N 16384, 100% and 15% labelled)                               (60, 120)
#   7. bench/gpu_train_smoke.py --steps 100: distilx.train end to end, resume, both paths (needs the wheel)  (20, 60)
#   8. bench/bench_relation.py --device cuda, when the file exists                                          (20, 45)
#   9. tests/test_relation_loss_gpu.py: the fused relation-KL at real sizes (its compiles need their own limit)  (25, 60)
#  10. pytest -m gpu on the rest of the suite                                                               (20, 45)
# Without CUDA every GPU step prints "SKIP (no CUDA device)" and the table says so; exit status 0.
#
# Prepare here (the CPU machine), in the repository root, then call the device tool:
#   rm -rf .whl && VIRTUAL_ENV=$PWD/.venv .venv/bin/maturin build --release -q -o .whl  # abi3 distilx wheel (cp310+)
#   rm -rf .gpu_carry && python3 -m pip download --no-deps -d .gpu_carry liger-kernel==0.8.5  # pure Python, 0.9 MB;
#       it declares torch>=2.1.2, triton>=2.3.1: the machine's torch 2.11 / triton 3.6 satisfy it
#   device run: command="bash bench/gpu_checks.sh", carry=[".whl", ".gpu_carry"], timeout_s=540
# (.whl and .gpu_carry are git-ignored.) Only the compiled module is taken from the wheel; the Python sources
# are this checkout's. Parts: `bash bench/gpu_checks.sh kernels|train|fused-linear|smoke` runs steps 1-2 / 3 /
# 5-6 / 7 alone (each well under the 15 minutes of a session). Afterwards, here:
#   python3 bench/gpu_summary.py unpack <files_at>/gpu_results.json docs/gpu/   # the JSON records to commit
#   cp <files_at>/tuned_configs.json python/distilx/triton_kernels/tuned_configs.json
set -uo pipefail
cd "$(dirname "$0")/.."
PART=${1:-all}
case "$PART" in all|kernels|train|fused-linear|smoke) ;; *)
  echo "usage: bash bench/gpu_checks.sh [kernels|train|fused-linear|smoke]" >&2; exit 2 ;; esac
FINAL_OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$FINAL_OUT"
RUN_DIR=$(mktemp -d /tmp/gpu_checks.XXXXXX)  # every step's JSON; bundled into $FINAL_OUT after each step
export OUT=$RUN_DIR
LOG="$FINAL_OUT/gpu_results.txt"
STEPS="$RUN_DIR/steps.tsv"
: > "$LOG"
: > "$STEPS"
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECKS_BUDGET:-470}
START=$(date +%s)
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
unset TRITON_INTERPRET

log() { echo "== $* ($(date -u +%H:%M:%S), $(( $(date +%s) - START )) s)" | tee -a "$LOG"; }
bundle() { $PY bench/gpu_summary.py bundle "$RUN_DIR" "$FINAL_OUT/gpu_results.json" --steps "$STEPS" 2>&1 | tee -a "$LOG"; }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$STEPS"; bundle; }
step() {  # step <limit seconds> <title> <command...>: run within min(limit, what the budget has left)
  local limit=$1 title=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if [ "$left" -lt 20 ]; then log "$title: skipped (global budget of $BUDGET s spent)"; record "$title" "skipped: budget" 0; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "$title (limit $limit s)"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]} status=ok
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && status="timeout ($limit s)"
  [ "$status" = ok ] && [ "$rc" != 0 ] && status="FAIL (exit $rc)"
  log "$title: $status"
  record "$title" "$status" $(( $(date +%s) - t0 ))
}
skip() { log "$1: SKIP ($2)"; record "$1" "skipped: $2" 0; }

log "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>/dev/null || echo "no nvidia-smi";
  $PY -c "import sys, torch, triton, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'cuda', torch.version.cuda)";
  git log -1 --format='commit %H %s (the copy'"'"'s git metadata: may lag the carried working tree)' 2>/dev/null; } 2>&1 | tee -a "$LOG"

# The native module from the carried wheel (abi3), next to the checkout's Python sources. A module already in
# python/distilx is kept only when it is newer than the wheel (a local build); an older one extracted by an
# earlier run on a warm machine must not shadow a rebuilt wheel.
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
  log "no .whl/distilx-*.whl carried: the steps that need distilx._native (3, 7) will fail or skip"
fi
# liger-kernel from the carried wheel, into a private folder (nothing is installed into the image)
if ls .gpu_carry/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_site .gpu_carry/*.whl 2>&1 | tee -a "$LOG"
  export PYTHONPATH="/tmp/gpu_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import distilx, torch; print('distilx from', distilx.__file__, '| cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG"
$PY -c "import liger_kernel, importlib.metadata as m; print('liger-kernel', m.version('liger-kernel'))" 2>&1 | tail -1 | tee -a "$LOG"
HAS_CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
HAS_NATIVE=$($PY -c "import distilx._native" >/dev/null 2>&1 && echo 1 || echo 0)
gpu_step() {  # like step, but a clear skip line without CUDA
  if [ "$HAS_CUDA" != 1 ]; then skip "$2" "no CUDA device"; else step "$@"; fi
}
want() { [ "$PART" = all ] || [[ " $* " == *" $PART "* ]]; }

if want kernels; then
  gpu_step 120 "1 pytest -m gpu tests/test_kernel_gpu.py" $PY -m pytest -m gpu -q -rA -p no:cacheprovider tests/test_kernel_gpu.py
  gpu_step 110 "2 tune_loss_kernels.py" $PY bench/tune_loss_kernels.py --candidates runtime --reps 10 --time-budget 90 --install
fi
if want train; then
  if [ "$HAS_NATIVE" != 1 ]; then skip "3 gpu_train.py" "distilx._native missing (carry .whl)";
  else gpu_step 175 "3 gpu_train.py" $PY bench/gpu_train.py --time-budget 160; fi
fi
if want kernels; then
  gpu_step 75 "4 bench_loss.py" $PY bench/bench_loss.py --device cuda --rows 16384 --vocab 30522 128256 250002 \
    --providers distilx eager liger --reps 10 --json "$RUN_DIR/bench_loss.json"
fi
if want fused-linear; then
  gpu_step 60 "5 pytest -m gpu tests/test_fused_linear_gpu.py" $PY -m pytest -m gpu -q -rA -p no:cacheprovider tests/test_fused_linear_gpu.py
  gpu_step 120 "6 bench_fused_linear.py" $PY bench/bench_fused_linear.py --device cuda --liger-rows 16384 \
    --json "$RUN_DIR/bench_fused_linear.json"
fi
if want smoke; then
  if [ "$HAS_NATIVE" != 1 ]; then skip "7 gpu_train_smoke.py" "distilx._native missing (carry .whl)";
  else gpu_step 60 "7 gpu_train_smoke.py" $PY bench/gpu_train_smoke.py --device cuda --steps 100; fi
fi
if [ "$PART" = all ]; then
  if [ -f bench/bench_relation.py ]; then gpu_step 45 "8 bench_relation.py" $PY bench/bench_relation.py --device cuda;
  else skip "8 bench_relation.py" "bench/bench_relation.py not in this checkout"; fi
  gpu_step 60 "9 pytest -m gpu tests/test_relation_loss_gpu.py" $PY -m pytest -m gpu -q -rA -p no:cacheprovider \
    tests/test_relation_loss_gpu.py
  gpu_step 45 "10 pytest -m gpu (rest of the suite)" $PY -m pytest -m gpu -q -rA -p no:cacheprovider \
    --continue-on-collection-errors --ignore=tests/test_kernel_gpu.py --ignore=tests/test_fused_linear_gpu.py \
    --ignore=tests/test_relation_loss_gpu.py tests
fi
[ -f "$RUN_DIR/tuned_configs.json" ] && cp "$RUN_DIR/tuned_configs.json" "$FINAL_OUT/tuned_configs.json"
bundle
log "done in $(( $(date +%s) - START )) s; summary:"
$PY bench/gpu_summary.py table "$FINAL_OUT/gpu_results.json" 2>&1 | tee -a "$LOG"
