"""End-to-end training throughput on one GPU: distilx vs transformers.Trainer with a tutorial KD loss vs the
DistilBERT research loop, same teacher, student, data and optimizer, in one run.

Sides (bench/gpu_baselines.py holds the two baselines):
  distilx           `distilx.train` with its automatic paths: the Triton loss, fused-linear when
                    `fused_linear_pays`, bf16 autocast, frozen bf16 teacher, fused AdamW;
  trainer-eager-kd  `transformers.Trainer` (bf16, fused AdamW) with a KD loss written the way tutorials
                    write it (F.kl_div x T^2 + F.cross_entropy + F.cosine_embedding_loss, teacher under no_grad);
  research-loop     a step shaped like DistilBERT's distiller: masking on the device, both forwards, the eager
                    triple loss, bf16 autocast, AdamW, clipping.
The same loss on every side: T = 2, alphas 5 / 2 / 1, KL over every real token, CE over the 15% masked
targets, cosine over every real token's last hidden state; AdamW lr 5e-4, betas (0.9, 0.98), eps 1e-6, no
weight decay, clip 5.

Models: teachers built from configs at their real sizes with random weights (throughput needs no trained
weights; the lent machines have no asset packages): BERT-base (12 x 768, V = 30522) -> 6 layers
(distilx's DistilBERT student), XLM-R-base (12 x 768, V = 250002) -> 6, ModernBERT-base (22 layers,
V = 50368) -> 11; the student is distilx's `init_student` of the teacher, and every run starts from the same
student weights. Sequences of 128 and 512 tokens, packed (every token real).

Data (the same text for every side): the repository's prose (bench/gpu_common.py), a WordPiece vocabulary
trained on it at run time; a vocabulary smaller than the model's is legal (ids < V), and the logits are
the model's full V wide, so the work per token is the real model's.
  distilx reads the raw text file: its Rust stream tokenizes, packs and masks on the fly inside the timed
  steps; its data-wait share is measured by the loop itself (target < 1% of step time).
  The baselines get the text pre-tokenized and packed in memory (tokenization untimed, in their favour):
  the Trainer through the usual HF path (DataCollatorForLanguageModeling in 2 DataLoader workers, pinned
  memory; `datasets` is not installed on the lent machines), the research loop with DistilBERT's masking on
  the GPU, as its distiller does. Both are the common, cheap ways to feed them.

Batch size: per side, the largest that fits, found by a bounded search (`fit_and_time`): two short
calibration runs (batch b and 2b: peak memory is ~ fixed + per-sequence x b), a prediction of the largest
batch under 90% of the GPU's memory (multiple of 8, capped at --max-tokens per batch), then the timed run
there; an out-of-memory error empties the cache and retries at 85% (at most 3 times). Reported: the batch
run, the predicted largest batch, whether the cap bound it, tokens/s over the timed steps, peak
`torch.cuda.max_memory_allocated` of the timed run (models and optimizer state included).

Time plan (bench/gpu_checks.sh gives it 160 s on an H100): per side two calibration runs (setup + 2 small
steps each) and the timed run (setup + 2 warm-up + 4 timed steps at up to 2^17 tokens a step), ~8 s; 18 sides
~150 s. With --time-budget a model or sequence length that would start too late is recorded as skipped
(BERT first, then XLM-R, then ModernBERT; 128 before 512), and the JSON is rewritten after every side.

Output: one JSON record per (model, seq_len, side) (docs/gpu/gpu_train.json is the committed copy), a table,
and the distilx / baseline ratios.

    python bench/gpu_train.py                          # CUDA: 3 models x {128, 512} x 3 sides
    python bench/gpu_train.py --quick                  # CUDA: BERT-base at 128 only
    python bench/gpu_train.py --models bert-base --seq-lens 512 --sides distilx trainer-eager-kd
    OMP_NUM_THREADS=1 python bench/gpu_train.py --device cpu --tiny   # tiny configs, a few steps (tests)
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_common import (default_out, device_summary, repository_paragraphs, token_stream,  # noqa: E402
                        train_wordpiece, write_corpus, write_json)
from gpu_sides import DATA_PATHS, SIDES, Context, run_side  # noqa: E402


@dataclass(frozen=True)
class ModelSpec:
    arch: str  # bert / xlm-roberta / modernbert
    layers: int
    student_layers: int
    vocab: int
    hidden: int = 768
    heads: int = 12
    intermediate: int = 3072


MODELS = {
    "bert-base": ModelSpec("bert", 12, 6, 30522),
    "xlm-r-base": ModelSpec("xlm-roberta", 12, 6, 250002),
    "modernbert-base": ModelSpec("modernbert", 22, 11, 50368, intermediate=1152),
}
SEQ_LENS = (128, 512)
TINY = dict(hidden=32, heads=2, intermediate=64, layers=4, student_layers=2)  # --tiny: CPU tests
VOCAB_UNITS = {"cuda": 8000, "cpu": 1000}  # WordPiece units trained on the docs (fewer if the text holds fewer)
MEMORY_SHARE = 0.90  # the batch search aims the peak at this share of the GPU's memory
SHRINK = 0.85  # after an out-of-memory error, retry at this share of the batch
MAX_SHRINKS = 3
CAL_TOKENS = 8192  # calibration batch: this many tokens (V <= 65536), half of it above
SEED = 56


# ---------------------------------------------------------------- models
def teacher_config(spec: ModelSpec, tok, vocab: int, tiny: bool):
    """A transformers config of the teacher, with the special-token ids of `tok` declared as the model expects."""
    import transformers

    shape = dict(TINY) if tiny else dict(hidden=spec.hidden, heads=spec.heads, intermediate=spec.intermediate,
                                         layers=spec.layers)
    common = dict(vocab_size=vocab, hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                  num_attention_heads=shape["heads"], intermediate_size=shape["intermediate"], pad_token_id=tok.pad_id)
    if spec.arch == "bert":
        return transformers.BertConfig(**common, max_position_embeddings=512)
    if spec.arch == "xlm-roberta":  # positions start after pad_token_id: 512 tokens need 514 embeddings with pad 1
        return transformers.XLMRobertaConfig(**common, max_position_embeddings=514, type_vocab_size=1,
                                             bos_token_id=tok.cls_id, eos_token_id=tok.sep_id)
    if spec.arch == "modernbert":
        extra = dict(global_attn_every_n_layers=3, local_attention=4) if tiny else {}
        return transformers.ModernBertConfig(**common, max_position_embeddings=8192 if not tiny else 512,
                                             bos_token_id=tok.cls_id, eos_token_id=tok.sep_id,
                                             cls_token_id=tok.cls_id, sep_token_id=tok.sep_id, **extra)
    raise ValueError(f"unknown architecture {spec.arch!r}")


def build_models(spec: ModelSpec, tok, device: str, tiny: bool, seed: int = SEED):
    """(bf16/fp32 frozen teacher, student, CPU copy of the student's initial weights)."""
    import transformers

    from distilx.models import init_student

    config = teacher_config(spec, tok, tok.vocab_size if tiny else spec.vocab, tiny)
    cls = {"bert": "BertForMaskedLM", "xlm-roberta": "XLMRobertaForMaskedLM",
           "modernbert": "ModernBertForMaskedLM"}[spec.arch]
    torch.manual_seed(seed)
    with torch.device(device):  # initialised where it runs: seconds, not minutes, at V = 250002
        teacher = getattr(transformers, cls)(config).eval()
    student = init_student(teacher, n_layers=TINY["student_layers"] if tiny else spec.student_layers).to(device)
    state = {k: v.detach().to("cpu", copy=True) for k, v in student.state_dict().items()}
    teacher.requires_grad_(False)
    if device == "cuda":
        teacher.to(torch.bfloat16)  # after the student copied its fp32 weights (what distilx.train does too)
    return teacher, student, state


# ---------------------------------------------------------------- batch search
@dataclass
class Attempt:
    batch: int
    warmup: int
    steps: int
    result: dict | None = None  # the side's measurement, None when it ran out of memory
    error: str | None = None


@dataclass
class Fit:
    batch: int | None  # the timed run's batch (None: nothing fitted)
    predicted: int | None  # the largest batch predicted from the calibration
    capped: bool
    timed: dict | None
    calibration: list = field(default_factory=list)  # [batch, peak bytes]
    attempts: list = field(default_factory=list)  # [batch, "ok" | "oom" | error]


def is_oom(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "CUBLAS_STATUS_ALLOC_FAILED" in text


def predict_batch(points: list[tuple[int, int]], budget: int, cap: int) -> int:
    """The largest batch whose peak stays under `budget`, from (batch, peak) calibration points: a line
    through two points (peak = fixed + per_sequence x batch), through the origin from one."""
    (b1, p1) = points[-1]
    slope, fixed = p1 / b1, 0.0  # through the origin: never too optimistic
    if len(points) >= 2 and points[0][0] != b1 and p1 > points[0][1]:
        b0, p0 = points[0]
        slope = (p1 - p0) / (b1 - b0)
        fixed = p1 - slope * b1
    batch = int((budget - fixed) / slope)
    batch = batch - batch % 8 if batch >= 8 else max(batch, 1)
    return max(1, min(batch, cap))


def fit_and_time(run, *, start: int, cap: int, budget: int, warmup: int, steps: int, log=print,
                 on_oom=lambda: None) -> Fit:
    """The largest batch that fits (bounded search, see the module docstring) and the timed run there.

    run(batch, warmup, steps) -> dict with "peak_memory_bytes" (and the side's measurements); raises an
    out-of-memory error when the batch does not fit: caught here, then on_oom() (empty the cache) runs once
    the failed run's frames are gone.
    """
    fit = Fit(batch=None, predicted=None, capped=False, timed=None)

    def attempt(batch, w, s):
        try:
            out = run(batch, w, s)
        except Exception as exc:  # noqa: BLE001 - out of memory is expected; anything else is reported
            if not is_oom(exc):
                raise
            fit.attempts.append([batch, "oom"])
            log(f"    batch {batch}: out of memory")
            out = None
        else:
            fit.attempts.append([batch, "ok"])
        if out is None:
            on_oom()
        return out

    b = max(1, min(start, cap))
    while True:  # the first calibration point: halve until something fits
        first = attempt(b, 1, 1)
        if first is not None or b == 1:
            break
        b //= 2
    if first is None:
        return fit
    fit.calibration.append([b, first["peak_memory_bytes"]])
    upper = cap
    if 2 * b <= cap:
        second = attempt(2 * b, 1, 1)
        if second is not None:
            fit.calibration.append([2 * b, second["peak_memory_bytes"]])
        else:  # 2b does not fit: the answer lies below it
            upper = 2 * b - 1
    fit.predicted = predict_batch(fit.calibration, budget, 10**9)
    target = min(fit.predicted, upper)
    fit.capped = fit.predicted > cap
    for _ in range(MAX_SHRINKS + 1):
        timed = attempt(target, warmup, steps)
        if timed is not None:
            fit.batch, fit.timed = target, timed
            return fit
        smaller = int(target * SHRINK)
        target = max(1, smaller - smaller % 8 if smaller >= 8 else smaller)
    return fit


def free_cuda():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- one (model, seq_len, side)
def calibration_batch(seq_len: int, vocab: int) -> int:
    tokens = CAL_TOKENS if vocab <= 65536 else CAL_TOKENS // 2
    return max(1, tokens // seq_len)


def measure(ctx: Context, side: str, seq_len: int, args) -> dict:
    import transformers

    record = dict(model=ctx.name, seq_len=seq_len, side=side, device=ctx.device_name, vocab=ctx.vocab,
                  teacher_layers=ctx.teacher_layers, student_layers=ctx.student_layers, precision=ctx.precision,
                  warmup_steps=args.warmup, timed_steps=args.steps, data_path=DATA_PATHS[side],
                  torch=torch.__version__, transformers=transformers.__version__)
    start = time.perf_counter()

    def run(batch, warmup, steps):
        try:
            return run_side(ctx, side, seq_len, batch, warmup, steps)
        finally:
            for p in ctx.student.parameters():
                p.grad = None
            free_cuda()

    try:
        if ctx.device == "cuda":
            cap = max(1, args.max_tokens // seq_len)
            budget = int(MEMORY_SHARE * torch.cuda.get_device_properties(0).total_memory)
            fit = fit_and_time(run, start=calibration_batch(seq_len, ctx.vocab), cap=cap, budget=budget,
                               warmup=args.warmup, steps=args.steps, log=print, on_oom=free_cuda)
            record.update(largest_batch_estimate=fit.predicted, batch_capped=fit.capped,
                          calibration=fit.calibration, attempts=fit.attempts)
            if fit.timed is None:
                record["error"] = "no batch fitted"
            else:
                record.update(batch_size=fit.batch, **fit.timed)
        else:
            record.update(batch_size=args.batch_size, **run(args.batch_size, args.warmup, args.steps))
    except Exception as exc:  # the record says what failed; the other sides still run
        traceback.print_exc()
        record["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


# ---------------------------------------------------------------- report
def fmt_row(r: dict) -> str:
    if "error" in r or "tokens_per_s" not in r:
        return f"| {r['model']} | {r['seq_len']} | {r['side']} | {r.get('error') or r.get('skipped')} | | | | |"
    peak = r.get("peak_memory_bytes")
    wait = r.get("data_wait_share")
    est = r.get("largest_batch_estimate")
    batch = f"{r['batch_size']}" + (f" (est. {est}{', capped' if r.get('batch_capped') else ''})" if est else "")
    return (f"| {r['model']} | {r['seq_len']} | {r['side']} | {r['tokens_per_s']:,.0f} | "
            f"{peak / 2**30:.1f} | {batch} | {'' if wait is None else f'{100 * wait:.2f}%'} | {r['seconds']} |"
            if peak is not None else
            f"| {r['model']} | {r['seq_len']} | {r['side']} | {r['tokens_per_s']:,.0f} | - | {batch} | "
            f"{'' if wait is None else f'{100 * wait:.2f}%'} | {r['seconds']} |")


def ratios(records: list[dict]) -> list[str]:
    lines = []
    ok = {(r["model"], r["seq_len"], r["side"]): r for r in records if "tokens_per_s" in r and "error" not in r}
    for (model, seq_len, side), r in ok.items():
        if side != "distilx":
            continue
        for other in SIDES[1:]:
            o = ok.get((model, seq_len, other))
            if o:
                lines.append(f"{model} @ {seq_len}: distilx / {other}: {r['tokens_per_s'] / o['tokens_per_s']:.2f}x "
                             f"tokens/s, batch {r['batch_size']} vs {o['batch_size']}")
    return lines


def summary(records: list[dict]) -> str:
    head = ["| model | seq | side | tokens/s | peak GiB | batch | data wait | s |", "|---|---|---|---|---|---|---|---|"]
    return "\n".join(head + [fmt_row(r) for r in records] + [""] + ratios(records))


# ---------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    p.add_argument("--seq-lens", nargs="+", type=int, default=list(SEQ_LENS))
    p.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    p.add_argument("--quick", action="store_true", help="BERT-base at 128 only (a few minutes' check of the wiring)")
    p.add_argument("--tiny", action="store_true", help="tiny models (hidden 32, 4 -> 2 layers): a CPU check of the script")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before the timed ones (default 2; 1 tiny)")
    p.add_argument("--steps", type=int, default=None, help="timed steps, a multiple of --warmup (default 4; 2 tiny)")
    p.add_argument("--batch-size", type=int, default=4, help="CPU only (no search there)")
    p.add_argument("--max-tokens", type=int, default=1 << 17, help="cap of batch x seq_len in the search")
    p.add_argument("--time-budget", type=float, default=None, help="seconds: configurations that would start after "
                   "this, minus the estimate of one, are recorded as skipped")
    p.add_argument("--out", type=Path, default=default_out("gpu_train.json"), help="JSON records (default $OUT/gpu_train.json)")
    args = p.parse_args(argv)
    args.device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible to torch")
    if args.quick:
        args.models, args.seq_lens = ["bert-base"], [128]
    args.warmup = args.warmup or (1 if args.tiny else 2)
    args.steps = args.steps or (2 if args.tiny else 4)
    if args.steps % args.warmup:
        p.error(f"--steps {args.steps} must be a multiple of --warmup {args.warmup} (distilx logs per --warmup steps)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from distilx import Tokenizer

    start = time.perf_counter()
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"# gpu_train: {device_summary(args.device)}; models {args.models}, seq_len {args.seq_lens}, sides "
          f"{args.sides}; {args.warmup} warm-up + {args.steps} timed steps per run", flush=True)
    records: list[dict] = []
    per_config = None  # seconds one (model, seq_len) took: the estimate for the time budget
    with tempfile.TemporaryDirectory(prefix="distilx-gpu-train-") as tmp:
        tmp = Path(tmp)
        paragraphs = repository_paragraphs()
        train_wordpiece(tmp / "tok", paragraphs, VOCAB_UNITS[args.device])
        tok = Tokenizer(str(tmp / "tok" / "tokenizer.json"))
        stream = token_stream(tmp / "tok" / "tokenizer.json", paragraphs)
        bytes_per_token = sum(len(p) + 1 for p in paragraphs) / len(stream)
        most_tokens = (args.max_tokens if args.device == "cuda" else args.batch_size * max(args.seq_lens))
        most_tokens *= args.warmup + args.steps
        corpus = write_corpus(tmp / "corpus.txt", paragraphs, int(1.5 * most_tokens * bytes_per_token) + 1)
        for name in args.models:
            spec = MODELS[name]
            if args.time_budget and per_config and time.perf_counter() - start + per_config > args.time_budget:
                records += [dict(model=name, seq_len=s, side=side, device=device_name, skipped="time budget")
                            for s in args.seq_lens for side in args.sides]
                continue
            teacher, student, state = build_models(spec, tok, args.device, args.tiny)
            ctx = Context(name=name, device=args.device, device_name=device_name, tmp=tmp, tokenizer_json=tmp / "tok" /
                          "tokenizer.json", corpus=corpus, tok=tok, teacher=teacher, student=student,
                          student_state=state, stream=stream, seed=SEED)
            print(f"## {name}: teacher {ctx.teacher_layers} layers, student {ctx.student_layers}, V={ctx.vocab}",
                  flush=True)
            for seq_len in args.seq_lens:
                config_start = time.perf_counter()
                if args.time_budget and per_config and config_start - start + per_config > args.time_budget:
                    records += [dict(model=name, seq_len=seq_len, side=side, device=device_name,
                                     skipped="time budget") for side in args.sides]
                    continue
                for side in args.sides:
                    print(f"  {name} @ {seq_len}: {side}", flush=True)
                    r = measure(ctx, side, seq_len, args)
                    records.append(r)
                    print("  " + fmt_row(r), flush=True)
                    write_json(args.out, records)
                per_config = max(per_config or 0.0, time.perf_counter() - config_start)
            del ctx, teacher, student, state
            free_cuda()
    write_json(args.out, records)
    print(summary(records), flush=True)
    if args.out:
        print(f"records written to {args.out}")
    failed = [r for r in records if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
