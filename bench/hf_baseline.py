#!/usr/bin/env python3
"""The Hugging Face way from raw text to masked-LM batches, timed: the baseline the data benchmarks
(bench/bench_data.py, bench/bench_tokenizer.py) run as a subprocess, so its thread pools are its own.

    python bench/hf_baseline.py CORPUS.txt TOKENIZER.json [--seq-len 128] [--batch 64]

The steps of the usual pretraining script (transformers' run_mlm.py with grouped texts):
1. the fast tokenizer (Rust, batched, RAYON_NUM_THREADS threads) over every non-empty line, no
   special tokens;
2. all ids concatenated and cut into blocks of seq_len - 2, each framed by the tokenizer's own
   [CLS]/[SEP] (or <s>/</s>); the tail that does not fill a block is dropped;
3. DataCollatorForLanguageModeling (15% targets, 80/10/10) batch by batch, into torch tensors.
Reading the file is not timed (it favours the baseline). Prints each stage and the line
`end-to-end <x> M tok/s` that the benchmarks parse (tokens = input_ids elements of every batch;
blocks are full, so there is no padding to exclude).
"""

from __future__ import annotations

import argparse
import time

# The special tokens of the two framing conventions, by role; the first set the vocabulary holds wins.
FRAMINGS = ({"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]",
             "unk_token": "[UNK]"},
            {"cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>", "mask_token": "<mask>",
             "unk_token": "<unk>"})


def load_tokenizer(tokenizer_json: str):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=tokenizer_json)
    vocab = tok.get_vocab()
    framing = next((f for f in FRAMINGS if all(t in vocab for t in f.values())), None)
    if framing is None:
        raise SystemExit(f"{tokenizer_json}: neither [CLS]/[SEP]/[PAD]/[MASK]/[UNK] nor <s>/</s>/<pad>/<mask>/<unk> "
                         "are all in its vocabulary")
    tok.add_special_tokens(framing)  # names them; they already have ids
    tok.backend_tokenizer.no_truncation()  # a packaged tokenizer.json may cut at 128 tokens
    tok.backend_tokenizer.no_padding()
    return tok


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
    body = args.seq_len - 2

    start = time.perf_counter()
    ids = tok(lines, add_special_tokens=False, return_attention_mask=False,
              return_token_type_ids=False)["input_ids"]
    tokenized = time.perf_counter()
    stream = [i for doc in ids for i in doc]
    blocks = [[tok.cls_token_id, *stream[i:i + body], tok.sep_token_id]
              for i in range(0, len(stream) - body + 1, body)]
    grouped = time.perf_counter()
    n_tokens = 0
    for i in range(0, len(blocks), args.batch):
        batch = collator([{"input_ids": block} for block in blocks[i:i + args.batch]])
        n_tokens += batch["input_ids"].numel()
    collated = time.perf_counter()

    print(f"corpus {n_bytes / 1e6:.1f} MB, {len(lines)} lines, {len(stream) / 1e6:.2f} M tokens, {len(blocks)} blocks")
    seconds = tokenized - start
    print(f"tokenize   {len(stream) / seconds / 1e6:.2f} M tok/s ({n_bytes / seconds / 1e6:.1f} MB/s)")
    print(f"group      {grouped - tokenized:.2f} s")
    print(f"collate    {n_tokens / (collated - grouped) / 1e6:.2f} M tok/s")
    print(f"end-to-end {n_tokens / (collated - start) / 1e6:.3f} M tok/s")


if __name__ == "__main__":
    main()
