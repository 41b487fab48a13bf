#!/usr/bin/env python3
"""Data engine vs the Hugging Face pipeline with a byte-level BPE and a Unigram tokenizer, end to
end, same text, same machine, one run.

    .venv/bin/python bench/bench_data_tokenizers.py [--threads N] [--vocab-size 16000]

1. Trains (untimed) a RoBERTa-style byte-level BPE and an XLM-R-style Unigram with the `tokenizers`
   library on the multilingual corpus (`distilx.sample_tokenizers`: English/French/Spanish
   Wikipedia leads, the kernel docs' Chinese/Japanese/Korean/Italian translations).
2. For each: the Hugging Face pipeline (`bench/hf_baseline.py` as a subprocess: the fast tokenizer,
   concatenate + cut + frame, `DataCollatorForLanguageModeling`) and `distilx.MaskedLMStream` (the
   tokenizers-crate path, `backend="hf"`) with packing (rows filled like the baseline's blocks) and
   with per-document chunks, on the held-back half of the corpus (text the tokenizers did not see).
Prints tokens per second, per core and per process-CPU-second, and the engine / Hugging Face ratio
per core (the issue's bar: >= 1).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench_data import engine_end_to_end, hf_baseline

STYLES = ("roberta", "xlmr")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--vocab-size", type=int, default=16_000)
    ap.add_argument("--train-bytes", type=int, default=400_000, help="training text per language")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()

    import time

    import distilx
    from distilx.sample_tokenizers import STYLES as MODELS, train_sample_tokenizers, training_and_check_texts

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folders = train_sample_tokenizers(tmp, styles=STYLES, vocab_size=a.vocab_size, train_bytes=a.train_bytes)
        trained = time.perf_counter() - t0
        corpus = Path(tmp) / "heldout.txt"
        texts = training_and_check_texts(a.train_bytes)[1]
        corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
        print(f"machine: {os.cpu_count()} cores, threads used: {a.threads}; corpus: {len(texts)} held-back "
              f"documents in 7 languages ({corpus.stat().st_size / 1e6:.1f} MB); tokenizers trained in {trained:.0f} s "
              f"(vocab {a.vocab_size})")
        results = {}
        for style in STYLES:
            print(f"\n[{style}] {MODELS[style][0]}")
            tok = distilx.Tokenizer(folders[style], backend="hf")
            hf = hf_baseline(corpus, folders[style], a.seq_len, a.batch, a.threads)
            engine_end_to_end(corpus, tok, a.seq_len, a.batch, a.threads, packing=True)  # warm, untimed
            packed = engine_end_to_end(corpus, tok, a.seq_len, a.batch, a.threads, packing=True)
            chunked = engine_end_to_end(corpus, tok, a.seq_len, a.batch, a.threads, packing=False)
            results[style] = (hf, packed, chunked)
        load = os.getloadavg()[0]

    print(f"\nload average during the run: {load:.1f} on {os.cpu_count()} cores"
          + ("  (BUSY machine: wall-clock numbers are noisy; the CPU-time column is not)" if load > 1.5 * (os.cpu_count() or 1) / 2 else ""))
    print(f"{'pipeline':48s} {'M tok/s':>9s}  {'per core':>9s}  {'M tok/CPU-s':>11s}")
    for style, (hf, packed, chunked) in results.items():
        for name, (wall, cpu) in (("Hugging Face (tokenizers + collator)", hf), ("distilx engine, packing", packed),
                                  ("distilx engine, per-document chunks", chunked)):
            print(f"{style + ': ' + name:48s} {wall / 1e6:9.3f}  {wall / a.threads / 1e6:9.3f}  {cpu / 1e6:11.3f}")
    print()
    for style, (hf, packed, chunked) in results.items():
        print(f"{style}: engine / Hugging Face, per core (wall) {packed[0] / hf[0]:5.2f}x packing, "
              f"{chunked[0] / hf[0]:5.2f}x chunks; per CPU-second {packed[1] / hf[1]:5.2f}x packing, "
              f"{chunked[1] / hf[1]:5.2f}x chunks (target >= 1x)")


if __name__ == "__main__":
    main()
