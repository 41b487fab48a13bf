"""Tune the fused logits kernel on a GPU and write the table the launcher reads.

One run: the device's measured copy bandwidth (a 2 GiB device-to-device copy, bytes read + written), then
for each vocabulary every candidate configuration (python/distilx/triton_kernels/tuning.py: the first
"rowwise" kernel, which is the default, and the streaming "stream" / "split" variants of
distill_logits_stream.py) on the same synthetic bf16 logits, N = 16384 rows, forward + the gradient written in
the forward (KL at T = 2 on every row, CE on 15%): each candidate is checked against the first kernel's outputs,
then timed (median of --reps CUDA-event launches). Reported per candidate: ms, GB/s on the 6 * N * V-byte bound
(read s, read t, write the gradient, bf16) and that as a share of the measured copy bandwidth; per vocabulary
the old (rowwise) against the best.

Writes (under $OUT by default):
  tune_loss_kernels.json  every measurement;
  tuned_configs.json      the committed table (python/distilx/triton_kernels/tuned_configs.json) with this
                          device's entry added or replaced: copy it there and commit it;
and with --install the winners go into this machine's tuning cache, so the steps of bench/gpu_checks.sh that
follow use them (source "cache" in bench_loss's records).

    python bench/tune_loss_kernels.py                        # V 30522 / 128256 / 250002, full candidate list
    python bench/tune_loss_kernels.py --vocab 30522 --candidates runtime --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_loss import measured_copy_bandwidth  # noqa: E402  (one home for the copy ceiling)
from gpu_common import default_out, write_json  # noqa: E402

from distilx.triton_kernels import tuning  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def bound_bytes(n: int, vocab: int, dtype: torch.dtype) -> int:
    """Read the student and teacher logits once, write the gradient once."""
    return 3 * n * vocab * dtype.itemsize


def table_with(device_key: str, device_entry: dict) -> dict:
    """The committed table with this device's entry added (or replaced)."""
    try:
        data = json.loads(tuning.TABLE_PATH.read_text())
    except (OSError, ValueError):
        data = {"format": 1, "devices": {}}
    data.setdefault("devices", {})[device_key] = device_entry
    return data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=16384)
    p.add_argument("--vocab", type=int, nargs="+", default=[30522, 128256, 250002])
    p.add_argument("--dtype", choices=tuple(DTYPES), default="bf16")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--candidates", choices=("runtime", "full"), default="full")
    p.add_argument("--time-budget", type=float, default=None, help="seconds; later candidates are skipped")
    p.add_argument("--install", action="store_true", help="store the winners in this machine's tuning cache")
    p.add_argument("--out", default=default_out("tune_loss_kernels.json"))
    p.add_argument("--table-out", default=default_out("tuned_configs.json"))
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("tune_loss_kernels: SKIP: no CUDA device (the tuning measures a GPU)")
        return 0
    start = time.monotonic()
    deadline = start + args.time_budget if args.time_budget else None
    device = torch.device("cuda")
    dtype = DTYPES[args.dtype]
    key = tuning.device_key(device)
    import triton

    copy_bw = measured_copy_bandwidth()
    print(f"# {key}; torch {torch.__version__}, triton {triton.__version__}; measured copy {copy_bw / 1e9:.0f} GB/s; "
          f"N={args.rows}, {args.dtype}, forward + gradient", flush=True)
    print(f"{'V':>7} {'configuration':<32} {'ms':>8} {'GB/s':>7} {'%copy':>6} {'vs rowwise':>10}", flush=True)
    report = {"device": key, "copy_bytes_per_s": copy_bw, "torch": torch.__version__, "triton": triton.__version__,
              "rows": args.rows, "dtype": args.dtype, "results": []}
    entries, summary = [], []
    for vocab in args.vocab:
        case = tuning.synthetic_case(args.rows, vocab, dtype, dtype, device)
        bound = bound_bytes(args.rows, vocab, dtype)
        default_name = tuning.default_config(vocab).name
        base = {}

        def show(row, vocab=vocab, bound=bound, base=base):
            if "seconds" not in row:
                print(f"{vocab:>7} {row['name']:<32} {row.get('error') or row.get('skipped')}", flush=True)
                return
            sec = row["seconds"]
            base.setdefault("seconds", sec)  # the first candidate is the default (rowwise)
            row.update(bytes_per_s=bound / sec, copy_fraction=bound / sec / copy_bw)
            print(f"{vocab:>7} {row['name']:<32} {sec * 1e3:>8.3f} {bound / sec / 1e9:>7.0f} "
                  f"{100 * bound / sec / copy_bw:>6.1f} {base['seconds'] / sec:>9.2f}x", flush=True)

        results = tuning.sweep(case, True, tuning.candidates(vocab, full=args.candidates == "full"), args.reps,
                               log=show, deadline=deadline)
        del case
        torch.cuda.empty_cache()
        for row in results:
            row["vocab"] = vocab
        report["results"] += results
        timed = [r for r in results if "seconds" in r]
        if not timed:
            continue
        best = min(timed, key=lambda r: r["seconds"])
        default = next((r for r in timed if r["name"] == default_name), None)
        entry = {"vocab": vocab, "dtypes": tuning.dtype_key(dtype, dtype), "write_grad": True, "rows": args.rows,
                 "config": best["config"], "seconds": best["seconds"], "copy_fraction": best["copy_fraction"],
                 "default_seconds": default["seconds"] if default else None}
        entries.append(entry)
        if args.install:
            tuning.store(key, dict(entry, tried=results))
        summary.append(f"V={vocab}: best {best['name']} {best['seconds'] * 1e3:.3f} ms = "
                       f"{100 * best['copy_fraction']:.1f}% of copy bandwidth on 6NV bytes"
                       + (f"; rowwise {default['seconds'] * 1e3:.3f} ms ({100 * default['copy_fraction']:.1f}%), "
                          f"{default['seconds'] / best['seconds']:.2f}x" if default else ""))
        write_json(args.out, report)
    report["entries"] = entries
    write_json(args.out, report)
    if entries:
        device_entry = {"measured": time.strftime("%Y-%m-%d", time.gmtime()), "copy_bytes_per_s": copy_bw,
                        "torch": torch.__version__, "triton": triton.__version__, "entries": entries}
        write_json(args.table_out, table_with(key, device_entry))
    tuning.forget()
    print("\n".join(["# summary (target: >= 70% of the measured copy bandwidth)"] + summary), flush=True)
    print(f"# {time.monotonic() - start:.0f} s; results in {args.out}, table in {args.table_out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
