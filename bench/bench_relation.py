"""Benchmark: MiniLMv2's relation KL (Q-Q + K-K + V-V), forward + backward, time and peak extra memory.

Sides, in one run on the same inputs (B sequences of length L with padding: lengths uniform in [L/2, L];
R relation heads of d_r columns on both sides, so H = R * d_r; student and teacher projections random):
  fused   distilx.relation_distillation_loss: the Triton kernels on CUDA, the chunked PyTorch path on CPU
  torch   (CUDA only) the chunked PyTorch path on the GPU
  eager   the MiniLMv2 formula with every [B, R, L, L] relation materialised
          (distilx.losses.relation_reference); on CUDA under bf16 autocast, as a training loop would
          run it (bf16 matmuls, fp32 softmax and KL)
Gradients flow to the three student projections on every side; the teacher's are constants.

How memory is measured (as bench/bench_loss.py does):
  CPU: each (side, L, d_r) runs in a fresh subprocess (`--one`) so its peak is its own: the RSS high-water
  mark (VmHWM) is reset to the current RSS once the inputs exist, and the peak over the timed repetitions
  minus that RSS is reported. Time: min over --reps after one warm-up on a small batch, wall clock and
  process CPU time; with --threads 1 on a shared machine the CPU time is the steadier comparison (the
  sides run minutes apart, and the share of a core a process gets drifts with the other users' load).
  GPU: torch.cuda.max_memory_allocated above the allocated bytes with the inputs in place, in a separate
  call after the timed ones; time: median of --reps CUDA-event timings after warm-up.

  python bench/bench_relation.py --device cpu --threads 1      # fp32, B = 32, L 128 / 512, d_r 32 / 64
  python bench/bench_relation.py --device cuda --json out.json   # bf16, same shapes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_loss import peak_rss, reset_peak_rss  # noqa: E402  (one home for the RSS method)

import distilx  # noqa: E402
from distilx.losses.relation_reference import reference_relation_loss  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def make_inputs(batch, length, heads, d_r, dtype, device, seed=0):
    """Three student and three teacher [B, L, R*d_r] projections (std 1) and a mask with lengths in [L/2, L]."""
    gen = torch.Generator(device=device).manual_seed(seed)

    def projection(grad):
        x = torch.empty(batch, length, heads * d_r, dtype=dtype, device=device).normal_(0, 1, generator=gen)
        return x.requires_grad_(grad)

    students = [projection(True) for _ in range(3)]
    teachers = [projection(False) for _ in range(3)]
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=gen, device=device)
    mask = (torch.arange(length, device=device)[None, :] < lengths[:, None]).long()
    return students, teachers, mask


def side_fn(side: str, device: str, heads: int):
    def fused(students, teachers, mask):
        distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=heads).loss.backward()

    def chunked_torch(students, teachers, mask):
        distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=heads,
                                           backend="torch").loss.backward()

    def eager(students, teachers, mask):
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" and students[0].dtype != torch.float32
                    else contextlib.nullcontext())
        with autocast:
            loss = reference_relation_loss(*students, *teachers, mask, relation_heads=heads)[0]
        loss.backward()

    return {"fused": fused, "torch": chunked_torch, "eager": eager}[side]


def sides(device: str):
    return ("fused", "torch", "eager") if device == "cuda" else ("fused", "eager")


def _clear_grads(students):
    for s in students:
        s.grad = None


# ---------------------------------------------------------------- CUDA
def measure_cuda(side, batch, length, heads, d_r, dtype_name, reps):
    fn = side_fn(side, "cuda", heads)
    students, teachers, mask = make_inputs(batch, length, heads, d_r, DTYPES[dtype_name], "cuda")
    for _ in range(3):
        _clear_grads(students)
        fn(students, teachers, mask)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        _clear_grads(students)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(students, teachers, mask)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    _clear_grads(students)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn(students, teachers, mask)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del students, teachers, mask
    torch.cuda.empty_cache()
    return dict(seconds=statistics.median(times), extra_bytes=peak)


# ---------------------------------------------------------------- CPU
def measure_cpu(side, batch, length, heads, d_r, dtype_name, reps, threads=None):
    """Runs in a fresh process: time (min of reps after one small warm-up) and peak RSS above the inputs."""
    if threads:
        torch.set_num_threads(threads)
    fn = side_fn(side, "cpu", heads)
    fn(*make_inputs(2, 16, heads, d_r, DTYPES[dtype_name], "cpu"))  # lazy initialisation outside the measurement
    students, teachers, mask = make_inputs(batch, length, heads, d_r, DTYPES[dtype_name], "cpu")
    before = reset_peak_rss()
    times, cpu_times = [], []
    for _ in range(reps):
        _clear_grads(students)
        start, cpu_start = time.perf_counter(), time.process_time()
        fn(students, teachers, mask)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return dict(seconds=min(times), cpu_seconds=min(cpu_times), extra_bytes=peak_rss() - before)


def run(args):
    if args.device == "cuda":
        print(f"# device: {torch.cuda.get_device_name()}; torch {torch.__version__}", flush=True)
    else:
        print(f"# device: CPU ({os.cpu_count()} cores), torch {torch.__version__}, "
              f"{args.threads or torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f} "
              "(timings on a shared machine are noisy)", flush=True)
    print(f"{'side':<6} {'B':>3} {'L':>5} {'R':>3} {'d_r':>4} {'dtype':>5} {'ms':>10} {'CPU ms':>10} {'extra MiB':>10} "
          f"{'relations':>10}", flush=True)
    results = []
    for length in args.lengths:
        for d_r in args.head_dims:
            row = {}
            for side in sides(args.device):
                spec = [side, args.batch, length, args.heads, d_r, args.dtype, args.reps]
                if args.device == "cuda":
                    try:
                        r = measure_cuda(*spec)
                    except torch.OutOfMemoryError:
                        print(f"{side:<6} {args.batch:>3} {length:>5}  out of memory", flush=True)
                        torch.cuda.empty_cache()
                        continue
                else:
                    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec + [args.threads])],
                                          capture_output=True, text=True)
                    if proc.returncode != 0:
                        print(f"{side:<6} {args.batch:>3} {length:>5} failed: {proc.stderr[-800:]}", flush=True)
                        continue
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                # one fp32 [B, R, L, L] relation: the unit the eager side holds several of
                relation_bytes = args.batch * args.heads * length * length * 4
                r.update(side=side, batch=args.batch, length=length, heads=args.heads, d_r=d_r, dtype=args.dtype,
                         device=args.device)
                row[side] = r
                results.append(r)
                print(f"{side:<6} {args.batch:>3} {length:>5} {args.heads:>3} {d_r:>4} {args.dtype:>5} "
                      f"{r['seconds'] * 1e3:>10.1f} {r.get('cpu_seconds', float('nan')) * 1e3:>10.1f} "
                      f"{r['extra_bytes'] / 2**20:>10.1f} "
                      f"{r['extra_bytes'] / relation_bytes:>10.2f}", flush=True)
            if "fused" in row:
                for other in ("eager", "torch"):
                    if other in row:
                        f, o = row["fused"], row[other]
                        ratio = dict(length=length, d_r=d_r, versus=other, speedup=o["seconds"] / f["seconds"],
                                     memory_fraction=f["extra_bytes"] / max(o["extra_bytes"], 1))
                        cpu = ""
                        if "cpu_seconds" in f:
                            ratio["cpu_speedup"] = o["cpu_seconds"] / f["cpu_seconds"]
                            cpu = f" ({ratio['cpu_speedup']:.2f}x in CPU time)"
                        results.append(ratio)
                        print(f"  L={length} d_r={d_r}: fused vs {other}: {ratio['speedup']:.2f}x faster{cpu}, extra "
                              f"memory {f['extra_bytes'] / 2**20:.0f} vs {o['extra_bytes'] / 2**20:.0f} MiB "
                              f"({100 * ratio['memory_fraction']:.1f}% of {other})", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--heads", type=int, default=12, help="relation heads R")
    parser.add_argument("--head-dims", type=int, nargs="+", default=[32, 64], help="d_r: columns per relation head")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--reps", type=int, default=None, help="default: 10 on CUDA, 2 on CPU")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU: torch threads per measurement (1 is steadier on a shared machine)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_cpu(*json.loads(args.one))))
        return
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    args.reps = args.reps or (10 if args.device == "cuda" else 2)
    results = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
