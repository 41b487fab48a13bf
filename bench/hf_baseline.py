#!/usr/bin/env python3
"""The Hugging Face way from raw text to masked-LM batches, timed: the baseline the data benchmarks
(bench/bench_data.py, bench/bench_data_tokenizers.py, bench/bench_tokenizer.py) run as a
subprocess, so its thread pools are its own.

    python bench/hf_baseline.py CORPUS.txt TOKENIZER [--seq-len 128] [--batch 64]

TOKENIZER: a tokenizer folder (or the tokenizer.json inside one) as `AutoTokenizer` loads it, its
special tokens named by the tokenizer_config.json / special_tokens_map.json beside it.
The steps of the usual pretraining script (transformers' run_mlm.py with grouped texts):
1. the fast tokenizer (Rust, batched, RAYON_NUM_THREADS threads) over every non-empty line, no
   special tokens;
2. all ids concatenated and cut into blocks, each framed as the tokenizer's own post-processor
   frames a sequence (`[CLS] … [SEP]`, `<s> … </s>`, …); the tail that does not fill a block is dropped;
3. DataCollatorForLanguageModeling (15% targets, 80/10/10) batch by batch, into torch tensors.
Reading the file is not timed (it favours the baseline). Prints each stage and the line
`end-to-end <x> M tok/s, <y> M tok/CPU-s` that the benchmarks parse (tokens = input_ids elements of
every batch; blocks are full, so there is no padding to exclude; CPU: the process's, every thread).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def load_tokenizer(path: str):
    """The tokenizer as transformers loads it from its folder: special tokens from its declarations."""
    from transformers import AutoTokenizer

    folder = Path(path).parent if Path(path).is_file() else Path(path)
    tok = AutoTokenizer.from_pretrained(str(folder))
    if tok.mask_token is None or tok.pad_token is None:
        raise SystemExit(f"{folder}: the tokenizer declares no mask or pad token (tokenizer_config.json)")
    tok.backend_tokenizer.no_truncation()  # a packaged tokenizer.json may cut at 128 tokens
    tok.backend_tokenizer.no_padding()
    return tok


def framing(tok) -> tuple[list[int], list[int]]:
    """(ids before, ids after) a sequence, as the tokenizer's post-processor puts them."""
    framed = tok.backend_tokenizer.encode("word").ids
    bare = tok.backend_tokenizer.encode("word", add_special_tokens=False).ids
    at = next(i for i in range(len(framed)) if framed[i:i + len(bare)] == bare)
    return framed[:at], framed[at + len(bare):]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("tokenizer")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    from transformers import DataCollatorForLanguageModeling

    with open(args.corpus, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f if line.strip()]
    n_bytes = sum(len(line.encode()) for line in lines)
    tok = load_tokenizer(args.tokenizer)
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    prefix, suffix = framing(tok)
    body = args.seq_len - len(prefix) - len(suffix)

    start, start_cpu = time.perf_counter(), time.process_time()
    ids = tok(lines, add_special_tokens=False, return_attention_mask=False,
              return_token_type_ids=False)["input_ids"]
    tokenized = time.perf_counter()
    stream = [i for doc in ids for i in doc]
    blocks = [prefix + stream[i:i + body] + suffix for i in range(0, len(stream) - body + 1, body)]
    grouped = time.perf_counter()
    n_tokens = 0
    for i in range(0, len(blocks), args.batch):
        batch = collator([{"input_ids": block} for block in blocks[i:i + args.batch]])
        n_tokens += batch["input_ids"].numel()
    collated, collated_cpu = time.perf_counter(), time.process_time()

    print(f"corpus {n_bytes / 1e6:.1f} MB, {len(lines)} lines, {len(stream) / 1e6:.2f} M tokens, {len(blocks)} blocks")
    seconds = tokenized - start
    print(f"tokenize   {len(stream) / seconds / 1e6:.2f} M tok/s ({n_bytes / seconds / 1e6:.1f} MB/s)")
    print(f"group      {grouped - tokenized:.2f} s")
    print(f"collate    {n_tokens / (collated - grouped) / 1e6:.2f} M tok/s")
    print(f"end-to-end {n_tokens / (collated - start) / 1e6:.3f} M tok/s, "
          f"{n_tokens / (collated_cpu - start_cpu) / 1e6:.3f} M tok/CPU-s")


if __name__ == "__main__":
    main()
