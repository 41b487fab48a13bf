#!/usr/bin/env python3
"""Parquet, Arrow and `datasets` corpora vs the same text as .txt, end to end, one run.

    .venv/bin/python bench/bench_parquet.py [--corpus FILE] [--tokenizer tokenizer.json] [--threads N] [--repeats R]

Writes the corpus's documents (its non-blank lines) once as a .txt, a Parquet file (snappy,
pyarrow's default row groups) and a `datasets` Arrow cache (`load_dataset("text")` on the .txt,
offline, in a temporary folder), then prints:
- `--epochs` epochs (default 4) of `MaskedLMStream` (seq_len 128, batch 64, torch tensors) from each, tokens per wall
  second and per process-CPU second (median of R runs, the sides interleaved so they share the
  machine's load), and each ratio to the .txt (target: >= 0.9); plus an in-memory
  `datasets.Dataset` (texts fed from Python) for information;
- the peak RSS of a fresh process while it streams an epoch from a Parquet file 1x and 4x the
  corpus (median of 3 processes each; Arrow, and the .txt as the control, likewise): the target is a
  peak independent of the file's size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEQ_LEN, BATCH = 128, 64

# Loading the tokenizer has its own transient peak (building the WordPiece tables): the child
# resets the peak after it (Linux: "5" > /proc/self/clear_refs), so VmHWM is the streaming's peak.
RSS_CHILD = """
import sys, distilx
tok = distilx.Tokenizer(sys.argv[2])
stream = distilx.MaskedLMStream(sys.argv[1], tok, seq_len=128, batch_size=64, num_threads=int(sys.argv[3]))
status = lambda key: int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1])
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
for _ in stream:
    pass
print(before, status("VmHWM:"))  # KiB
"""


def epoch(files, tok, threads: int, epochs: int = 1) -> tuple[float, float]:
    """(tokens per wall second, tokens per process-CPU second) over `epochs` epochs of one stream (an epoch
    of the default corpus lasts ~0.2 s: several make a sample that thread start-up does not dominate)."""
    import distilx
    stream = distilx.MaskedLMStream(files, tok, seq_len=SEQ_LEN, batch_size=BATCH, num_threads=threads, drop_last=False)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for _ in stream:  # iterating again starts the next epoch
            pass
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    tokens = stream.stats()["tokens"]
    return tokens / dt, tokens / dc


def peak_rss_mib(path: Path, tokenizer: Path, threads: int) -> tuple[float, float]:
    """(RSS before streaming, peak RSS while streaming an epoch) of a fresh process, MiB."""
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, str(path), str(tokenizer), str(threads)],
                         capture_output=True, text=True, check=True)
    before, peak = out.stdout.split()[-2:]
    return int(before) / 1024, int(peak) / 1024


def main() -> None:
    from distilx import assets
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=None, help="one document per line (default: the English corpus)")
    ap.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json (default: bert-base-uncased)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per timed sample")
    a = ap.parse_args()
    corpus = a.corpus or assets.english_corpus()[0]
    tokenizer = a.tokenizer or assets.minilm_tokenizer_json()

    tmp = Path(tempfile.mkdtemp(prefix="distilx-bench-parquet-"))
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HOME"] = str(tmp / "hf")
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    import distilx
    from distilx.dataset_inputs import engine_inputs

    with open(corpus, encoding="utf-8") as f:
        docs = [line.rstrip("\n") for line in f if line.strip()]
    txt = tmp / "docs.txt"
    txt.write_text("\n".join(docs) + "\n", encoding="utf-8")
    parquet = tmp / "docs.parquet"
    pq.write_table(pa.table({"text": docs}), parquet, compression="snappy")
    cached = datasets.load_dataset("text", data_files=str(txt), split="train", cache_dir=str(tmp / "cache"))
    assert all(str(i).endswith(".arrow") for i in engine_inputs(cached, "text")[0]), "not the Rust route"
    in_memory = datasets.Dataset.from_dict({"text": docs})
    print(f"machine: {os.cpu_count()} cores, threads used: {a.threads}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; corpus {corpus}: {len(docs)} documents, "
          f"{txt.stat().st_size / 1e6:.1f} MB as .txt, {parquet.stat().st_size / 1e6:.1f} MB as Parquet "
          f"({pq.ParquetFile(parquet).metadata.num_row_groups} row group(s), snappy), "
          f"{sum(Path(c['filename']).stat().st_size for c in cached.cache_files) / 1e6:.1f} MB as Arrow cache")

    tok = distilx.Tokenizer(tokenizer)
    sides = {".txt": txt, "Parquet (snappy)": parquet, "datasets Arrow cache": cached,
             "datasets in memory (fed from Python)": in_memory}
    for files in sides.values():  # warm the page cache and the allocator once, untimed
        epoch(files, tok, a.threads)
    runs = {name: [] for name in sides}
    for _ in range(a.repeats):
        for name, files in sides.items():
            runs[name].append(epoch(files, tok, a.threads, a.epochs))
    print(f"\nend to end, {a.epochs} epoch(s) per sample, seq_len {SEQ_LEN} x batch {BATCH} (median of {a.repeats} "
          "interleaved samples):")
    base_wall = statistics.median(r[0] for r in runs[".txt"])
    base_cpu = statistics.median(r[1] for r in runs[".txt"])
    print(f"  {'source':40s} {'M tok/s':>8s} {'M tok/CPU-s':>12s} {'vs .txt (wall)':>15s} {'vs .txt (CPU)':>14s}")
    for name, r in runs.items():
        wall, cpu = statistics.median(x[0] for x in r), statistics.median(x[1] for x in r)
        print(f"  {name:40s} {wall / 1e6:8.2f} {cpu / 1e6:12.2f} {wall / base_wall:14.2f}x {cpu / base_cpu:13.2f}x")

    big_txt, big_parquet, arrows = tmp / "docs-4x.txt", tmp / "docs-4x.parquet", [tmp / "docs.arrow", tmp / "docs-4x.arrow"]
    big_txt.write_text("\n".join(docs * 4) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"text": docs * 4}), big_parquet, compression="snappy")
    for path, n in zip(arrows, (1, 4)):  # the stream format, as datasets writes it, 1000-row batches
        table = pa.table({"text": docs * n})
        with pa.ipc.new_stream(path, table.schema) as w:
            for batch in table.to_batches(max_chunksize=1000):
                w.write_batch(batch)
    print("\npeak RSS of a fresh process while it streams one epoch, over its RSS before (median of 3 processes;"
          " Parquet with pyarrow's default row groups, Arrow in 1 000-row batches):")
    for kind, paths in ((".txt (control)", (txt, big_txt)), ("Parquet", (parquet, big_parquet)), ("Arrow", arrows)):
        rises = []
        for path, label in zip(paths, ("1x", "4x")):
            runs = [peak_rss_mib(path, tokenizer, a.threads) for _ in range(3)]
            rise = statistics.median(peak - before for before, peak in runs)
            rises.append(rise)
            print(f"  {kind:15s} {label}: {path.stat().st_size / 1e6:6.1f} MB on disk, RSS before {runs[0][0]:6.1f} MiB, "
                  f"peak +{rise:5.1f} MiB (runs: {', '.join(f'+{p - b:.1f}' for b, p in runs)})")
        print(f"  {kind:15s} 4x / 1x rise: {rises[1] / rises[0]:.2f} (a file 4x the size)")


if __name__ == "__main__":
    main()
