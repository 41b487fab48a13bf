#!/usr/bin/env python3
"""Tokenizer throughput: distilx's fast WordPiece vs the `tokenizers` library (and flash-tokenizer,
blingfire when installed) on the same corpus, in one run, plus the data engine's end-to-end
masked-batch throughput vs the Hugging Face pipeline (bench/hf_baseline.py).

    .venv/bin/python bench/bench_tokenizer.py [--corpus FILE] [--max-mb MB] [--repeat N] [--no-engine]

Every tokenizer runs in its own subprocess (so thread pools are sized per run and one library's
warm caches do not help another), on the non-empty lines of the corpus, without special tokens,
truncation or padding. Each worker encodes once to warm up, then reports its best of --repeat timed
passes and a hash of every line's ids; the parent counts lines whose ids differ from `tokenizers`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HF_BASELINE = Path(__file__).resolve().with_name("hf_baseline.py")


def read_lines(corpus: str, max_mb: float | None) -> list[str]:
    lines, total = [], 0
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            lines.append(line)
            total += len(line.encode("utf-8"))
            if max_mb is not None and total >= max_mb * 1e6:
                break
    return lines


def line_hashes(all_ids) -> list[str]:
    return [hashlib.blake2b(",".join(map(str, ids)).encode(), digest_size=8).hexdigest() for ids in all_ids]


def make_encoder(name: str, threads: int, tokenizer_json: str, vocab_txt: str):
    """A function texts -> list of id lists (no special tokens) for one library and thread count."""
    if name == "distilx":
        import distilx

        tok = distilx.Tokenizer(tokenizer_json, backend="wordpiece")
        return lambda texts: tok.encode(texts, num_threads=threads)
    if name == "tokenizers":
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(tokenizer_json)
        tok.no_truncation()
        tok.no_padding()
        return lambda texts: [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    if name == "flash-tokenizer":
        # Load the C++ extension directly: the package's __init__ imports `requests` for downloads.
        import importlib.machinery
        import importlib.util

        spec = importlib.util.find_spec("flash_tokenizer")
        if spec is None:
            raise ImportError("flash-tokenizer is not installed")
        folder = Path(list(spec.submodule_search_locations)[0])
        so = next(folder.glob("_core*.so"))
        loader = importlib.machinery.ExtensionFileLoader("flash_tokenizer._core", str(so))
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader("flash_tokenizer._core", loader))
        loader.exec_module(module)
        tok = module.FlashBertTokenizer(vocab_txt, True, 1 << 30, True)

        def encode(texts):
            out = tok.batch_encode(texts, "longest", -1, threads > 1)
            return [ids[1:-1] for ids in out]  # it always adds [CLS] ... [SEP]
        return encode
    if name == "blingfire":
        import blingfire

        model = blingfire.load_model(os.path.join(os.path.dirname(blingfire.__file__), "bert_base_tok.bin"))
        return lambda texts: [blingfire.text_to_ids(model, t, len(t.encode()) + 8, 100, True).tolist() for t in texts]
    raise ValueError(name)


def worker(args) -> None:
    lines = read_lines(args.corpus, args.max_mb)
    encode = make_encoder(args.worker, args.threads, args.tokenizer_json, args.vocab_txt)
    ids = encode(lines)  # warm-up (also fills lazily built tables)
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ids = encode(lines)
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"seconds": best, "tokens": sum(map(len, ids)), "hashes": line_hashes(ids)}))


def run_worker(name: str, threads: int, args) -> dict | None:
    env = dict(os.environ)
    # The tokenizers library sizes its Rayon pool from RAYON_NUM_THREADS and turns parallelism off
    # with TOKENIZERS_PARALLELISM=false; set both so "1 thread" really is one.
    env["RAYON_NUM_THREADS"] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false" if threads == 1 else "true"
    cmd = [sys.executable, __file__, "--worker", name, "--threads", str(threads), "--corpus", args.corpus,
           "--repeat", str(args.repeat), "--tokenizer-json", args.tokenizer_json, "--vocab-txt", args.vocab_txt]
    if args.max_mb is not None:
        cmd += ["--max-mb", str(args.max_mb)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {name} ({threads} thread(s)) skipped: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def engine_end_to_end(corpus_file: str, tokenizer_json: str, seq_len: int, batch: int) -> float:
    """Masked batches per second from MaskedLMStream (all cores), as tokens/s (numel of input_ids)."""
    import distilx

    stream = distilx.MaskedLMStream(corpus_file, tokenizer_json, seq_len=seq_len, batch_size=batch, packing=True,
                                    padding="fixed", shuffle=False, drop_last=False)
    t0 = time.perf_counter()
    tokens = 0
    for b in stream:
        tokens += b["input_ids"].numel()
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", help="one document per line (default: distilx's English corpus train.txt)")
    ap.add_argument("--max-mb", type=float, default=None, help="use only the first MB of the corpus")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-engine", action="store_true", help="skip the end-to-end masked-batch comparison")
    ap.add_argument("--no-tokenizers", action="store_true", help="only the end-to-end masked-batch comparison")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--tokenizer-json")
    ap.add_argument("--vocab-txt")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        return worker(args)

    from distilx import assets

    args.corpus = args.corpus or str(assets.english_corpus()[0])
    args.tokenizer_json = args.tokenizer_json or str(assets.minilm_tokenizer_json())
    args.vocab_txt = args.vocab_txt or str(Path(args.tokenizer_json).with_name("vocab.txt"))
    lines = read_lines(args.corpus, args.max_mb)
    mb = sum(len(line.encode()) for line in lines) / 1e6
    cores = os.cpu_count() or 1
    print(f"corpus {args.corpus}: {len(lines)} lines, {mb:.1f} MB; tokenizer {args.tokenizer_json}")
    print(f"machine: {cores} cores; best of {args.repeat} after a warm-up pass, each library in its own process\n")

    rows = {}
    for name in [] if args.no_tokenizers else ["tokenizers", "distilx", "flash-tokenizer", "blingfire"]:
        for threads in sorted({1, cores}):
            if name == "blingfire" and threads > 1:
                continue  # its Python API is one call per text: no batch threading
            result = run_worker(name, threads, args)
            if result is not None:
                rows[(name, threads)] = result

    if rows:
        print(f"{'tokenizer':<16}{'threads':>8}{'M tok/s':>10}{'MB/s':>8}{'vs tokenizers':>15}{'lines != tokenizers':>21}")
    for (name, threads), r in rows.items():
        base = rows.get(("tokenizers", threads)) or rows.get(("tokenizers", 1))
        ratio = base["seconds"] / r["seconds"] if base else float("nan")
        differ = sum(a != b for a, b in zip(r["hashes"], base["hashes"])) if base else -1
        print(f"{name:<16}{threads:>8}{r['tokens'] / r['seconds'] / 1e6:>10.2f}{mb / r['seconds']:>8.1f}"
              f"{ratio:>14.2f}x{differ:>12} / {len(lines)} ({differ / len(lines):.2%})")

    if args.no_engine:
        return
    print(f"\nend to end: masked batches (seq_len {args.seq_len}, batch {args.batch}) from the same lines")
    with tempfile.TemporaryDirectory() as tmp:
        corpus_file = os.path.join(tmp, "corpus.txt")
        Path(corpus_file).write_text("\n".join(lines) + "\n", encoding="utf-8")
        ours = engine_end_to_end(corpus_file, args.tokenizer_json, args.seq_len, args.batch)
        print(f"  distilx MaskedLMStream   {ours / 1e6:8.3f} M tok/s")
        proc = subprocess.run([sys.executable, str(HF_BASELINE), corpus_file, args.tokenizer_json,
                               "--seq-len", str(args.seq_len), "--batch", str(args.batch)],
                              capture_output=True, text=True)
        e2e = [line for line in proc.stdout.splitlines() if line.startswith("end-to-end")]
        if proc.returncode != 0 or not e2e:
            print(f"  Hugging Face pipeline failed: {proc.stderr.strip().splitlines()[-1:]}")
            return
        theirs = float(e2e[0].split()[1]) * 1e6
        print(f"  Hugging Face pipeline    {theirs / 1e6:8.3f} M tok/s   ({HF_BASELINE})")
        print(f"  ratio                    {ours / theirs:8.2f}x")


if __name__ == "__main__":
    main()
