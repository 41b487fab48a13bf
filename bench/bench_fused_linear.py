"""Benchmark: fused-linear distillation vs the logits path, forward + backward, time and peak extra memory.

Sides, in one run on the same inputs (N rows, hidden H, vocabulary V; 15% of rows labelled, every row
real, alpha 5 / 2 / 1 with hidden-state cosine, T = 2):
  fused-linear  distilx.fused_linear_distillation_loss(x_s, W_s, x_t, W_t, labels, biases, hidden states)
  logits        s = x_s @ W_s.T + b_s, t = x_t @ W_t.T + b_t (no grad), distilx.distillation_loss(s, t, ...)
Gradients flow to x_s, W_s, b_s and the student hidden states on every side.

Liger at equal work (CUDA, when liger-kernel imports; bench/bench_liger.py), per --liger-labelled share of
labelled rows (default 1.0: every row, both sides project every row; and 0.15: distilx projects only the
labelled rows, Liger projects all and masks):
  fused-linear@liger  fused_linear_distillation_loss with alpha_cos = 0, kl_on = "targets"
  liger-jsd           LigerFusedLinearJSDLoss (beta 0 = forward KL at T over the labelled rows, + the
                      hard-label CE; weight_soft_loss = alpha_kl * T^2, weight_hard_loss = alpha_mlm: the same
                      quantity; torch.compile'd chunks, its default)

"Extra memory" is the peak above the inputs during forward + backward. "Beyond W grad" subtracts what
every side must hand back anyway: the [V, H] weight gradient and the [V] bias gradient in the weight's
dtype, plus the fused-linear side's fp32 accumulator when the weight is not fp32 (issue 13's definition).
One logits tensor is N x V in the logits' dtype; the targets are on that scale.

How memory is measured:
  CPU: each (side, N, V) runs in a fresh subprocess (`--one`) so its peak is its own: the kernel's RSS
  high-water mark (VmHWM) is reset to the current RSS after the inputs exist (/proc/self/clear_refs, as
  bench/bench_loss.py does), and the peak over the timed repetitions minus that RSS is reported. glibc
  returns every block over 32 MiB to the OS on free, so the chunk buffers are counted while they live.
  GPU: torch.cuda.max_memory_allocated above torch.cuda.memory_allocated with the inputs in place,
  measured in a separate call after the timed ones (allocator bytes, not the cache's reserve).
Time: CPU min over --reps after a small warm-up; GPU the median of --reps CUDA-event timings after warm-up.

  python bench/bench_fused_linear.py --device cpu                   # fp32, N=4096, H=384, V 30522 / 250002
  python bench/bench_fused_linear.py --device cuda                  # bf16, N 8192 / 16384, H=768, V=250002
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_loss import peak_rss, reset_peak_rss  # noqa: E402  (one home for the RSS method)

import bench_liger  # noqa: E402

import distilx  # noqa: E402

TEMPERATURE, ALPHA_KL, ALPHA_MLM, ALPHA_COS = 2.0, 5.0, 2.0, 1.0
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
SIDES = ("fused-linear", "logits")


def make_inputs(n, hidden, vocab, dtype, device, seed=0, labelled=0.15):
    """Student and teacher projection inputs/weights/biases, hidden states, labels (`labelled` share); filled in
    place."""
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape, std=1.0):
        return torch.empty(*shape, dtype=dtype, device=device).normal_(0, std, generator=gen)

    # weights of a trained head's scale (logits with std ~3), teacher = a perturbed student
    w_s = randn(vocab, hidden, std=3 / hidden**0.5)
    w_t = w_s + randn(vocab, hidden, std=1 / hidden**0.5)
    inputs = dict(
        x_s=randn(n, hidden), w_s=w_s, b_s=randn(vocab, std=0.1),
        x_t=randn(n, hidden), w_t=w_t, b_t=randn(vocab, std=0.1),
        h_s=randn(n, hidden), h_t=randn(n, hidden),
    )
    labels = torch.randint(0, vocab, (n,), device=device, generator=gen)
    labels[torch.rand(n, device=device, generator=gen) >= labelled] = -100
    inputs["labels"] = labels
    for key in ("x_s", "w_s", "b_s", "h_s"):
        inputs[key].requires_grad_(True)
    return inputs


def side_fns():
    options = dict(temperature=TEMPERATURE, alpha_kl=ALPHA_KL, alpha_mlm=ALPHA_MLM, alpha_cos=ALPHA_COS)

    def fused_linear(a):
        distilx.fused_linear_distillation_loss(
            a["x_s"], a["w_s"], a["x_t"], a["w_t"], a["labels"], student_bias=a["b_s"], teacher_bias=a["b_t"],
            student_hidden=a["h_s"], teacher_hidden=a["h_t"], **options,
        ).loss.backward()

    def logits(a):
        s = torch.addmm(a["b_s"], a["x_s"], a["w_s"].t())
        with torch.no_grad():
            t = torch.addmm(a["b_t"], a["x_t"], a["w_t"].t())
        distilx.distillation_loss(s, t, a["labels"], None, a["h_s"], a["h_t"], **options).loss.backward()

    return {"fused-linear": fused_linear, "logits": logits}


def liger_fns(jsd_class):
    """The equal-work pair: distilx's fused-linear loss at Liger's work, and LigerFusedLinearJSDLoss."""
    options = dict(temperature=TEMPERATURE, alpha_kl=ALPHA_KL, alpha_mlm=ALPHA_MLM)
    modules = {}

    def distilx_side(a):
        distilx.fused_linear_distillation_loss(
            a["x_s"], a["w_s"], a["x_t"], a["w_t"], a["labels"], student_bias=a["b_s"], teacher_bias=a["b_t"],
            alpha_cos=0.0, kl_on="targets", **options).loss.backward()

    def liger_side(a):
        if "jsd" not in modules:
            modules["jsd"] = bench_liger.fused_linear_module(jsd_class, **options)
        try:
            loss = modules["jsd"](a["x_s"], a["w_s"], a["x_t"], a["w_t"], a["labels"], a["b_s"], a["b_t"])
        except Exception as exc:  # noqa: BLE001 - torch.compile failing here is a fact to report, not a crash
            if not getattr(modules["jsd"], "compiled", False):
                raise
            print(f"# LigerFusedLinearJSDLoss with compiled=True failed ({type(exc).__name__}: {str(exc)[:200]}); "
                  "measuring compiled=False", flush=True)
            modules["jsd"] = bench_liger.fused_linear_module(jsd_class, compiled=False, **options)
            loss = modules["jsd"](a["x_s"], a["w_s"], a["x_t"], a["w_t"], a["labels"], a["b_s"], a["b_t"])
        loss.backward()

    return {"fused-linear@liger": distilx_side, "liger-jsd": liger_side}


def clear_grads(a):
    for key in ("x_s", "w_s", "b_s", "h_s"):
        a[key].grad = None


def returned_grad_bytes(side, n, hidden, vocab, dtype):
    """Bytes every side hands back for W_s and b_s (+ fused-linear's fp32 accumulator for non-fp32 weights)."""
    own = (vocab * hidden + vocab) * dtype.itemsize
    if side.startswith("fused-linear") and dtype != torch.float32:
        own += (vocab * hidden + vocab) * 4
    return own


# ---------------------------------------------------------------- CPU
def measure_one_cpu(side, n, hidden, vocab, dtype_name, reps, threads):
    """Runs in a fresh process: time (min of reps after a warm-up) and peak RSS above the inputs."""
    if threads:
        torch.set_num_threads(threads)
    fn = side_fns()[side]
    dtype = DTYPES[dtype_name]
    fn(make_inputs(8, hidden, 64, dtype, "cpu"))  # lazy initialisation outside the measurement
    a = make_inputs(n, hidden, vocab, dtype, "cpu")
    before = reset_peak_rss()
    times = []
    for _ in range(reps):
        clear_grads(a)
        start = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - start)
    extra = peak_rss() - before
    return dict(side=side, n=n, hidden=hidden, vocab=vocab, dtype=dtype_name, seconds=min(times), extra_bytes=extra)


def run_cpu(args):
    print(f"# device: CPU ({os.cpu_count()} cores), torch {torch.__version__}, "
          f"{args.threads or torch.get_num_threads()} threads, {args.dtype}, H={args.hidden}; "
          "timings on a shared machine are noisy", flush=True)
    print(header(), flush=True)
    results = []
    for vocab in args.vocab:
        for n in args.rows:
            row = {}
            for side in SIDES:
                r = run_subprocess(side, n, args, vocab)
                if r is None and side == "logits":
                    # the logits path may not fit: measure it at the largest N that does, and say so
                    smaller = n // 2
                    while r is None and smaller >= 256:
                        print(f"# logits path did not run at N={n}; retrying at N={smaller}", flush=True)
                        r = run_subprocess(side, smaller, args, vocab)
                        smaller //= 2
                if r is None:
                    continue
                results.append(r)
                row[side] = r
                print(line(r), flush=True)
            print_ratios(row, args)
    return results


def run_subprocess(side, n, args, vocab):
    spec = json.dumps([side, n, args.hidden, vocab, args.dtype, args.reps, args.threads])
    proc = subprocess.run([sys.executable, __file__, "--one", spec], capture_output=True, text=True)
    if proc.returncode != 0:
        why = "killed (out of memory?)" if proc.returncode < 0 else proc.stderr[-500:]
        print(f"{side:<13} {n:>6} {vocab:>7} failed (exit {proc.returncode}): {why}", flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- CUDA
def measure_cuda(fn, a, reps):
    for _ in range(3):
        clear_grads(a)
        fn(a)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        clear_grads(a)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(a)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    clear_grads(a)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn(a)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    clear_grads(a)
    return statistics.median(times), peak


def _measure_sides(fns, args, vocab, n, labelled, results, work):
    dtype = DTYPES[args.dtype]
    row = {}
    for side, fn in fns.items():
        a = make_inputs(n, args.hidden, vocab, dtype, "cuda", labelled=labelled)
        try:
            sec, peak = measure_cuda(fn, a, args.reps)
        except torch.OutOfMemoryError:
            print(f"{side:<18} {n:>6} {vocab:>7} out of memory", flush=True)
            continue
        finally:
            del a
            torch.cuda.empty_cache()
        r = dict(side=side, n=n, hidden=args.hidden, vocab=vocab, dtype=args.dtype, seconds=sec, extra_bytes=peak,
                 labelled=labelled, work=work, device=torch.cuda.get_device_name())
        results.append(r)
        row[side] = r
        print(line(r), flush=True)
    return row


def run_cuda(args):
    print(f"# device: {torch.cuda.get_device_name()}; torch {torch.__version__}; {args.dtype}, H={args.hidden}",
          flush=True)
    liger = bench_liger.load()
    if liger is not None:
        print(f"# liger-kernel {liger['version']}", flush=True)
    print(header(), flush=True)
    results = []
    for vocab in args.vocab:
        for n in args.rows:
            row = _measure_sides(side_fns(), args, vocab, n, 0.15, results, "triple loss, alpha_cos 1, 15% labelled")
            print_ratios(row, args)
            if liger is None or (args.liger_rows and n not in args.liger_rows):
                continue
            for labelled in args.liger_labelled:
                row = _measure_sides(liger_fns(liger["jsd"]), args, vocab, n, labelled, results,
                                     f"Liger's work: alpha_cos 0, kl_on targets, {labelled:.0%} labelled")
                print_ratios(row, args, base="fused-linear@liger", others=("liger-jsd",))
    fused = [r for r in results if r["side"] == "fused-linear"]
    for vocab in args.vocab:
        at_v = sorted((r for r in fused if r["vocab"] == vocab), key=lambda r: r["n"])
        if len(at_v) >= 2:
            lo, hi = at_v[0], at_v[-1]
            print(f"  V={vocab}: fused-linear extra memory beyond W grad at N={lo['n']} vs N={hi['n']}: "
                  f"{beyond(lo) / 2**20:.0f} vs {beyond(hi) / 2**20:.0f} MiB "
                  f"(ratio {beyond(hi) / max(beyond(lo), 1):.2f}; independent of N means ~1, the logits path scales "
                  f"with N)", flush=True)
    return results


# ---------------------------------------------------------------- report
def header():
    return (f"{'side':<18} {'N':>6} {'V':>7} {'dtype':>5} {'ms':>10} {'extra MiB':>10} {'beyond W grad':>14} "
            f"{'/ logits':>9}")


def beyond(r):
    return r["extra_bytes"] - returned_grad_bytes(r["side"], r["n"], r["hidden"], r["vocab"], DTYPES[r["dtype"]])


def logits_bytes(r):
    return r["n"] * r["vocab"] * DTYPES[r["dtype"]].itemsize


def line(r):
    return (f"{r['side']:<18} {r['n']:>6} {r['vocab']:>7} {r['dtype']:>5} {r['seconds'] * 1e3:>10.1f} "
            f"{r['extra_bytes'] / 2**20:>10.1f} {beyond(r) / 2**20:>14.1f} {beyond(r) / logits_bytes(r):>9.3f}")


def print_ratios(row, args, base="fused-linear", others=("logits",)):
    if base not in row:
        return
    f = row[base]
    for other in others:
        if other not in row:
            continue
        o = row[other]
        # per-row normalisation only matters when the logits side had to fall back to a smaller N
        scale = f["n"] / o["n"]
        note = "" if o["n"] == f["n"] else f" (logits side measured at N={o['n']}, scaled x{scale:g} to N={f['n']})"
        time_ratio = f["seconds"] / (o["seconds"] * scale)
        mem_ratio = beyond(f) / max(beyond(o) * scale, 1)
        raw_ratio = f["extra_bytes"] / max(o["extra_bytes"] * scale, 1)
        print(f"  N={f['n']} V={f['vocab']}: {base} / {other}: time {time_ratio:.2f}x ({1 / time_ratio:.2f}x the "
              f"speed), extra memory {raw_ratio:.3f}x (beyond W grad {mem_ratio:.3f}x); {base} extra beyond W grad = "
              f"{beyond(f) / logits_bytes(f):.3f} of one logits tensor ({logits_bytes(f) / 2**20:.0f} MiB){note}",
              flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", type=int, nargs="+")
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--vocab", type=int, nargs="+")
    parser.add_argument("--dtype", choices=tuple(DTYPES))
    parser.add_argument("--reps", type=int)
    parser.add_argument("--liger-labelled", type=float, nargs="+", default=[1.0, 0.15],
                        help="CUDA: shares of labelled rows for the Liger comparison")
    parser.add_argument("--liger-rows", type=int, nargs="+", default=None,
                        help="CUDA: the N at which to compare with Liger (default: every --rows)")
    parser.add_argument("--threads", type=int, default=None, help="CPU: torch threads per measurement")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one_cpu(*json.loads(args.one))))
        return
    if args.device == "cuda":
        args.rows, args.hidden = args.rows or [8192, 16384], args.hidden or 768
        args.vocab, args.dtype, args.reps = args.vocab or [250002], args.dtype or "bf16", args.reps or 10
        results = run_cuda(args)
    else:
        args.rows, args.hidden = args.rows or [4096], args.hidden or 384
        args.vocab, args.dtype, args.reps = args.vocab or [30522, 250002], args.dtype or "fp32", args.reps or 1
        results = run_cpu(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
