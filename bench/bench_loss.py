"""Benchmark: the distillation loss (KL at T=2 + masked-LM CE), forward + backward, time and peak memory.

Providers, all in one run on the same inputs:
  distilx        distilx.distillation_loss (Triton on CUDA, the chunked PyTorch path on CPU)
  distilx-torch  (CUDA only) the chunked PyTorch path on the GPU
  eager          the DistilBERT formula in eager PyTorch (distilx.losses.reference)
  liger          (CUDA, when liger-kernel imports) Liger-Kernel's LigerKLDIVLoss on log_softmax(s/T) vs
                 log_softmax(t/T) + LigerCrossEntropyLoss, scaled to distilx's quantity (bench/bench_liger.py:
                 alpha_kl * T^2 * KL + alpha_mlm * CE; Liger's KL takes log-probs, formed in fp32 in PyTorch)
Inputs: N rows x V vocabulary, 15% of rows labelled, every row real (no padding), alpha_cos = 0.

GPU: CUDA-event timing (median of --reps after warm-up), peak memory from torch.cuda.max_memory_allocated
above the inputs, achieved GB/s against the 6*N*V-byte lower bound (bf16: read s and t, write the gradient)
and against the device's peak and a measured device-to-device copy (`copy_bytes_per_s`, bytes read +
written per second, in every JSON record beside the device's name and, for distilx, the kernel
configuration the launcher chose: python/distilx/triton_kernels/tuning.py).
CPU: each (provider, N, V) runs in a fresh subprocess so the peak RSS is its own (VmHWM after resetting
it to the RSS with the inputs in place); timings on a shared machine are noisy.

  python bench/bench_loss.py                      # CUDA if available, else CPU defaults
  python bench/bench_loss.py --device cpu --rows 1024 4096 --vocab 30522
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_liger  # noqa: E402

import distilx  # noqa: E402
from distilx.losses import ALPHA_KL, ALPHA_MLM, IGNORE_INDEX, TEMPERATURE  # noqa: E402
from distilx.losses.reference import reference_distillation_loss  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# spec-sheet HBM bandwidth (bytes/s) by device-name fragment
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100 80GB HBM3": 3.35e12, "H100 SXM": 3.35e12, "H100 NVL": 3.9e12,
                  "H100 PCIe": 2.0e12, "A100-SXM4-80GB": 2.04e12, "A100 80GB PCIe": 1.94e12, "A100": 1.55e12}
CPU_MAX_ELEMENTS = 1 << 27  # above this the eager formula needs > 4 GB on CPU: skipped


def provider_fns(device: str):
    def run_distilx(s, t, labels):
        distilx.distillation_loss(s, t, labels, temperature=TEMPERATURE, alpha_kl=ALPHA_KL, alpha_mlm=ALPHA_MLM,
                                  alpha_cos=0.0).loss.backward()

    def run_distilx_torch(s, t, labels):
        distilx.distillation_loss(s, t, labels, temperature=TEMPERATURE, alpha_kl=ALPHA_KL, alpha_mlm=ALPHA_MLM,
                                  alpha_cos=0.0, backend="torch").loss.backward()

    def run_eager(s, t, labels):
        reference_distillation_loss(s, t, labels, temperature=TEMPERATURE, alpha_kl=ALPHA_KL, alpha_mlm=ALPHA_MLM,
                                    alpha_cos=0.0)[0].backward()

    fns = {"distilx": run_distilx}
    if device == "cuda":
        fns["distilx-torch"] = run_distilx_torch
    fns["eager"] = run_eager
    liger = bench_liger.load() if device == "cuda" else None
    if liger is not None:
        kl, ce = bench_liger.logits_modules(liger, IGNORE_INDEX)

        def run_liger(s, t, labels):
            bench_liger.logits_loss(s, t, labels, kl, ce, temperature=TEMPERATURE, alpha_kl=ALPHA_KL,
                                    alpha_mlm=ALPHA_MLM).backward()

        fns["liger"] = run_liger
    return fns


def make_inputs(n, vocab, dtype, device, seed=0):
    gen = torch.Generator(device=device).manual_seed(seed)
    # filled in place: no temporaries, so the memory baseline is clean
    s = torch.empty(n, vocab, dtype=dtype, device=device).normal_(0, 3, generator=gen)
    t = torch.empty(n, vocab, dtype=dtype, device=device).normal_(0, 3, generator=gen)
    labels = torch.randint(0, vocab, (n,), device=device, generator=gen)
    labels[torch.rand(n, device=device, generator=gen) < 0.85] = IGNORE_INDEX
    return s.requires_grad_(True), t, labels


# ---------------------------------------------------------------- CUDA
def measured_copy_bandwidth(nbytes: int = 1 << 31, reps: int = 10) -> float:
    """Bytes read + written per second by a large device-to-device copy (METHOD.md's memory ceiling): the best
    of `reps` timed copies of 2 GiB (far above the L2), after warm-up."""
    x = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_(0, 256)  # not zeros: real data
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    best = float("inf")
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        y.copy_(x)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    del x, y
    torch.cuda.empty_cache()
    return 2 * nbytes / best


def bench_cuda(fn, s, t, labels, reps):
    for _ in range(3):
        s.grad = None
        fn(s, t, labels)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s.grad = None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(s, t, labels)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    s.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn(s, t, labels)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    s.grad = None
    return statistics.median(times), peak


def run_cuda(args):
    name = torch.cuda.get_device_name()
    peak_bw = next((bw for key, bw in PEAK_BANDWIDTH.items() if key in name), None)
    copy_bw = measured_copy_bandwidth()
    print(f"# device: {name}; torch {torch.__version__}; spec peak "
          f"{peak_bw / 1e9 if peak_bw else float('nan'):.0f} GB/s; measured copy {copy_bw / 1e9:.0f} GB/s", flush=True)
    fns = {k: v for k, v in provider_fns("cuda").items() if k in args.providers}
    header = f"{'provider':<14} {'N':>6} {'V':>7} {'dtype':>5} {'ms':>9} {'extra MiB':>10} {'extra/logits':>12} {'GB/s':>7} {'%peak':>6} {'%copy':>6}"
    print(header, flush=True)
    results = []
    for vocab in args.vocab:
        for n in args.rows:
            dtype = DTYPES[args.dtype]
            row = {}
            for prov, fn in fns.items():
                s, t, labels = make_inputs(n, vocab, dtype, "cuda")
                try:
                    sec, peak = bench_cuda(fn, s, t, labels, args.reps)
                except torch.OutOfMemoryError:
                    print(f"{prov:<14} {n:>6} {vocab:>7} {args.dtype:>5}  out of memory", flush=True)
                    continue
                finally:
                    del s, t, labels
                    torch.cuda.empty_cache()
                logits_bytes = n * vocab * dtype.itemsize
                bound = 3 * logits_bytes  # read s, read t, write grad: 6*N*V bytes in bf16
                gbs = bound / sec
                row[prov] = (sec, peak)
                results.append(dict(provider=prov, n=n, vocab=vocab, dtype=args.dtype, seconds=sec, extra_bytes=peak,
                                    device=name, copy_bytes_per_s=copy_bw, bound_bytes=bound,
                                    bound_bytes_per_s=gbs, **kernel_fields(prov, n, vocab, dtype)))
                print(f"{prov:<14} {n:>6} {vocab:>7} {args.dtype:>5} {sec * 1e3:>9.3f} {peak / 2**20:>10.1f} "
                      f"{peak / logits_bytes:>12.2f} {gbs / 1e9:>7.0f} "
                      f"{(100 * gbs / peak_bw) if peak_bw else float('nan'):>6.1f} {100 * gbs / copy_bw:>6.1f}", flush=True)
            print_ratios(row, n, vocab)
    return results


def kernel_fields(provider, n, vocab, dtype) -> dict:
    """For the Triton path: the kernel configuration the launcher uses at this shape, and where it came from."""
    if provider != "distilx":
        return {}
    from distilx.triton_kernels import tuning

    config, source = tuning.config_with_source(torch.device("cuda"), vocab, dtype, dtype, True)
    return {"kernel": config.name, "kernel_source": source}


# ---------------------------------------------------------------- CPU
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> int:
    """Reset the kernel's high-water mark to the current RSS (Linux >= 4.0) and return that RSS in bytes.

    Without the reset, a peak reached earlier (imports, input creation) would hide part of the one measured.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmRSS") * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss() -> int:
    try:
        return _status_kib("VmHWM") * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_one_cpu(provider, n, vocab, dtype_name, reps, threads=None):
    """Runs in a fresh process: time (min of reps after one warm-up) and peak RSS above the inputs."""
    if threads:
        torch.set_num_threads(threads)
    fn = provider_fns("cpu")[provider]
    dtype = DTYPES[dtype_name]
    warm_s, warm_t, warm_l = make_inputs(4, vocab, dtype, "cpu")
    fn(warm_s, warm_t, warm_l)  # lazy initialisation outside the measurement
    del warm_s, warm_t, warm_l
    s, t, labels = make_inputs(n, vocab, dtype, "cpu")
    before = reset_peak_rss()
    times = []
    for _ in range(reps):
        s.grad = None
        start = time.perf_counter()
        fn(s, t, labels)
        times.append(time.perf_counter() - start)
    peak = peak_rss() - before
    return dict(provider=provider, n=n, vocab=vocab, dtype=dtype_name, seconds=min(times), extra_bytes=peak)


def run_cpu(args):
    print(f"# device: CPU ({os.cpu_count()} cores), torch {torch.__version__}, "
          f"{args.threads or torch.get_num_threads()} threads; "
          "timings on a shared machine are noisy", flush=True)
    header = f"{'provider':<14} {'N':>6} {'V':>7} {'dtype':>5} {'ms':>9} {'extra MiB':>10} {'extra/logits':>12}"
    print(header, flush=True)
    results = []
    for vocab in args.vocab:
        for n in args.rows:
            if n * vocab > CPU_MAX_ELEMENTS:
                print(f"# N={n} V={vocab}: skipped on CPU (the eager formula would need > 4 GB)", flush=True)
                continue
            row = {}
            for prov in provider_fns("cpu"):
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", json.dumps([prov, n, vocab, args.dtype, args.reps, args.threads])],
                    capture_output=True, text=True,
                )
                if proc.returncode != 0:
                    print(f"{prov:<14} {n:>6} {vocab:>7} failed: {proc.stderr[-500:]}", flush=True)
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                logits_bytes = n * vocab * DTYPES[args.dtype].itemsize
                row[prov] = (r["seconds"], r["extra_bytes"])
                results.append(r)
                print(f"{prov:<14} {n:>6} {vocab:>7} {args.dtype:>5} {r['seconds'] * 1e3:>9.1f} "
                      f"{r['extra_bytes'] / 2**20:>10.1f} {r['extra_bytes'] / logits_bytes:>12.2f}", flush=True)
            print_ratios(row, n, vocab)
    return results


def print_ratios(row, n, vocab):
    if "distilx" not in row:
        return
    sec, peak = row["distilx"]
    for other in ("eager", "liger", "distilx-torch"):
        if other in row:
            o_sec, o_peak = row[other]
            print(f"  N={n} V={vocab}: distilx vs {other}: {o_sec / sec:.2f}x faster, "
                  f"extra memory {peak / 2**20:.0f} vs {o_peak / 2**20:.0f} MiB ({o_peak / max(peak, 1):.2f}x less)",
                  flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", type=int, nargs="+")
    parser.add_argument("--vocab", type=int, nargs="+", default=[30522, 128256, 250002])
    parser.add_argument("--providers", nargs="+", default=["distilx", "eager", "liger"],
                        help="CUDA: which of distilx, distilx-torch, eager, liger to run (default: all but distilx-torch)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default=None)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU: torch threads per measurement (1 is steadier on a shared machine)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one_cpu(*json.loads(args.one))))
        return
    if args.device == "cuda":
        args.rows = args.rows or [4096, 16384]
        args.dtype = args.dtype or "bf16"
        args.reps = args.reps or 20
        results = run_cuda(args)
    else:
        args.rows = args.rows or [1024, 4096]
        args.dtype = args.dtype or "fp32"
        args.reps = args.reps or 2
        results = run_cpu(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
