#!/usr/bin/env python3
"""Data engine vs the Hugging Face pipeline, end to end, same corpus, same machine, one run.

    .venv/bin/python bench/bench_data.py [--corpus FILE] [--tokenizer tokenizer.json] [--threads N]

Prints, for raw text -> masked batches (seq_len 128, batch 64, 15% / 80-10-10):
- the Hugging Face pipeline (`bench/hf_baseline.py`, run as a subprocess: fast tokenizer
  over every line, concatenate + cut, DataCollatorForLanguageModeling), end to end;
- distilx.MaskedLMStream with packing (rows filled like the baseline's blocks) and with the default
  per-document chunking, end to end (tokens that reach the model, padding excluded), and the ratio;
- the engine's tokenizer alone on the same threads (no reading, framing or masking) and the ratio
  end-to-end / tokenizer-alone;
- per-stage costs (each stage run alone) and tokens/s per core.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def hf_baseline(corpus: Path, tokenizer: Path, seq_len: int, batch: int, threads: int) -> tuple[float, float] | None:
    """(tokens per wall second, tokens per process-CPU second) of the Hugging Face pipeline."""
    script = ROOT / "bench" / "hf_baseline.py"
    env = {**os.environ, "RAYON_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, str(script), str(corpus), str(tokenizer), "--seq-len", str(seq_len),
                          "--batch", str(batch)], capture_output=True, text=True, env=env, check=True)
    for line in out.stdout.splitlines():
        print(f"  hf | {line}")
    m = re.search(r"end-to-end\s+([\d.]+)\s+M tok/s, ([\d.]+) M tok/CPU-s", out.stdout)
    return (float(m.group(1)) * 1e6, float(m.group(2)) * 1e6) if m else None


def engine_end_to_end(corpus: Path, tok, seq_len: int, batch: int, threads: int, packing: bool) -> tuple[float, float]:
    """(tokens per wall second, tokens per process-CPU second) over one epoch."""
    import distilx
    stream = distilx.MaskedLMStream(corpus, tok, seq_len=seq_len, batch_size=batch, packing=packing,
                                    num_threads=threads, drop_last=False)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in stream:  # each batch as a dict of torch tensors, as a training loop receives it
        pass
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    real = stream.stats()["tokens"]  # tokens that reach the model (padding excluded), whole epoch
    return real / dt, real / dc


def main() -> None:
    from distilx import assets
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=None, help="one document per line (default: the English corpus)")
    ap.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json (default: bert-base-uncased)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--backend", default="auto", choices=["auto", "wordpiece", "hf"],
                    help="the engine's tokenizer: fast WordPiece (auto) or the tokenizers crate (hf)")
    ap.add_argument("--skip-hf", action="store_true")
    a = ap.parse_args()
    corpus = a.corpus or assets.english_corpus()[0]
    tokenizer = a.tokenizer or assets.minilm_tokenizer_json()

    import distilx
    from distilx import _native
    print(f"machine: {os.cpu_count()} cores, threads used: {a.threads}; corpus {corpus} "
          f"({corpus.stat().st_size / 1e6:.1f} MB); tokenizer {tokenizer}")
    tok = distilx.Tokenizer(tokenizer, backend=a.backend)
    print(f"engine tokenizer backend: {tok.backend}")

    hf = None if a.skip_hf else hf_baseline(corpus, tokenizer, a.seq_len, a.batch, a.threads)

    # Warm the page cache and the allocator once, untimed.
    engine_end_to_end(corpus, tok, a.seq_len, a.batch, a.threads, packing=True)
    packed, packed_cpu = engine_end_to_end(corpus, tok, a.seq_len, a.batch, a.threads, packing=True)
    chunked, chunked_cpu = engine_end_to_end(corpus, tok, a.seq_len, a.batch, a.threads, packing=False)

    # Per-stage timings live in builds with the `bench` cargo feature only (the wheel has none).
    st = None
    if hasattr(_native, "stage_costs"):
        st = _native.stage_costs([str(corpus)], tok, seq_len=a.seq_len, batch_size=a.batch, packing=True,
                                 num_threads=a.threads)
        tok_alone = st["tokens"] / st["tokenize_s"]
        tok_alone_cpu = st["tokens"] / st["tokenize_cpu"]
    load = os.getloadavg()[0]

    print()
    print(f"load average during the run: {load:.1f} on {os.cpu_count()} cores"
          + ("  (BUSY machine: wall-clock numbers are noisy; the CPU-time column is not)" if load > 1.5 * (os.cpu_count() or 1) / 2 else ""))
    print(f"{'pipeline':44s} {'M tok/s':>9s}  {'per core':>9s}  {'M tok/CPU-s':>11s}")
    if hf:
        print(f"{'Hugging Face (tokenizers + collator)':44s} {hf[0] / 1e6:9.3f}  {hf[0] / a.threads / 1e6:9.3f}  {hf[1] / 1e6:11.3f}")
    print(f"{'distilx engine, packing':44s} {packed / 1e6:9.3f}  {packed / a.threads / 1e6:9.3f}  {packed_cpu / 1e6:11.3f}")
    print(f"{'distilx engine, per-document chunks':44s} {chunked / 1e6:9.3f}  {chunked / a.threads / 1e6:9.3f}  {chunked_cpu / 1e6:11.3f}")
    if hf:
        print(f"\nengine (packing) / Hugging Face          = {packed / hf[0]:6.2f}x   (target >= 2x)")
    if st is None:
        print()
        print("tokenizer alone and per-stage costs: skipped (this build of distilx._native lacks the `bench` "
              "cargo feature; build it with `maturin develop --release --features bench`, as scripts/bootstrap.sh does)")
        return
    print(f"{'distilx tokenizer alone (' + tok.backend + ')':44s} {tok_alone / 1e6:9.3f}  {tok_alone / a.threads / 1e6:9.3f}  {tok_alone_cpu / 1e6:11.3f}")
    print()
    print(f"engine (packing) / tokenizer alone, wall = {packed / tok_alone:6.1%}   (target >= 90%)")
    print(f"engine (packing) / tokenizer alone, CPU  = {packed_cpu / tok_alone_cpu:6.1%}   "
          "(share of the engine's CPU spent tokenizing)")
    print()
    total = st["read_s"] + st["tokenize_s"] + st["frame_s"] + st["mask_s"]
    print(f"per-stage costs, each stage alone over {st['documents']} documents, {st['tokens'] / 1e6:.2f} M tokens, "
          f"{st['rows']} rows:")
    for name, key, note in (("read + UTF-8 decode", "read", "1 thread"),
                            ("tokenize", "tokenize", f"{a.threads} threads"),
                            ("frame rows", "frame", "1 thread"),
                            ("mask + build arrays", "mask", f"{a.threads} threads")):
        s, c = st[key + "_s"], st[key + "_cpu"]
        print(f"  {name:22s} {s * 1e3:8.1f} ms wall  {s / total:6.1%}  {c * 1e9 / st['tokens']:7.1f} CPU-ns/token  ({note})")


if __name__ == "__main__":
    main()
