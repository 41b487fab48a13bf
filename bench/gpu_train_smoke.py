"""End-to-end training check that needs no offline asset package: `distilx.train` on a GPU (or the CPU).

Everything it uses comes from the checkout: the corpus is the repository's own prose (README.md and
docs/*.md, one paragraph per document), a lowercase WordPiece tokenizer is trained on it at run time with
the `tokenizers` library, and the teacher is a random BERT built from a config here (saved with the
tokenizer into a temporary folder, as a user's teacher folder would be). The student keeps half the
teacher's layers (a DistilBertForMaskedLM, the recipe). On CUDA: bf16 autocast and the Triton loss
backend; on the CPU: fp32 and the PyTorch backend (Triton is GPU-only there).

For each vocabulary-projection path (the logits path, `fused_linear="off"`, and the fused-linear path,
`"on"`) it runs
- "full": `--steps` optimizer steps uninterrupted;
- "resumed": the same run stopped after half the steps (`train(..., stop_after=)`, in process, as if
  killed after its checkpoint) and resumed to the end from that checkpoint (`resume=True`).
It reports per run the first and last losses, real tokens/s (median over the steps after the first
tenth, which holds the Triton compiles), peak GPU memory (`torch.cuda.max_memory_allocated`) and wall
time; per path the largest |loss difference| between "full" and "resumed" over the resumed half (and over
the first half, where both runs compute the same steps: the run-to-run noise to compare it with), and the
largest |loss difference| between the two paths.

Failures (exit status 1): an exception, a non-finite loss, a skipped step, a run that did not reach its
step count, a resumed run that did not continue from the half-way checkpoint, a loss that did not decrease
(mean of the last quarter of the steps not below the first quarter's), and on the CPU a resumed run that
is not bit-identical to the uninterrupted one (the project's guarantee there). On the GPU the resume
differences are reported, not asserted: bit-exactness is not guaranteed there (accumulation order of
atomics), so compare them with the first-half noise.

    python bench/gpu_train_smoke.py                      # CUDA when available: 200 steps per run
    python bench/gpu_train_smoke.py --out results.json   # default: $OUT/gpu_train_smoke.json when OUT is set
    OMP_NUM_THREADS=1 python bench/gpu_train_smoke.py --device cpu   # tiny model, 8 steps per run, ~10 s

(One torch thread on the CPU: on a shared 2-core machine two threads wait on each other, ~10x slower.)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_common import default_out, repository_paragraphs, train_wordpiece, write_json  # noqa: E402

from distilx import TrainConfig, train  # noqa: E402
from distilx.metrics_log import read_records  # noqa: E402

#: Teacher shape, batch shape and steps per run for each device: the GPU one is sized to finish its four runs
#: in under two minutes on an H100/H200 (an estimate: it has not run on a GPU yet); the CPU one in seconds.
PRESETS = {
    "cuda": dict(hidden=256, layers=6, heads=4, intermediate=1024, batch_size=32, seq_len=128, steps=200,
                 precision="bf16", loss_backend="triton"),
    "cpu": dict(hidden=64, layers=4, heads=2, intermediate=128, batch_size=8, seq_len=64, steps=8,
                precision="fp32", loss_backend="torch"),
}
PATHS = {"logits": "off", "fused-linear": "on"}
VOCAB_SIZE = 8000  # the trainer stops earlier when the repository's prose holds fewer WordPiece units
# BERT's own init (std 0.02) leaves a random network close to the identity: a half-depth student then
# matches its teacher from the start (KL and cosine terms near 0) and the loss stays flat within the batch
# noise. At 0.1 the student starts measurably away from the teacher, and distillation lowers the loss
# from the first steps: a loss that does not fall means a broken step.
TEACHER_INIT_STD = 0.1


def build_teacher(folder: Path, paragraphs: list[str], preset: dict, seed: int = 0) -> Path:
    """A lowercase WordPiece tokenizer trained on `paragraphs` and a random BERT teacher for its vocabulary,
    saved together in `folder` (config.json, model.safetensors, tokenizer.json, vocab.txt)."""
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = train_wordpiece(folder, paragraphs, VOCAB_SIZE)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=preset["hidden"],
                        num_hidden_layers=preset["layers"], num_attention_heads=preset["heads"],
                        intermediate_size=preset["intermediate"], max_position_embeddings=max(128, preset["seq_len"]),
                        pad_token_id=tokenizer.token_to_id("[PAD]"), initializer_range=TEACHER_INIT_STD)
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


def run_config(teacher: Path, corpus: Path, out: Path, preset: dict, device: str, fused_linear: str,
               steps: int) -> TrainConfig:
    return TrainConfig(teacher=str(teacher), train_files=[str(corpus)], output_dir=str(out),
                       seq_len=preset["seq_len"], batch_size=preset["batch_size"], packing=True,
                       loss_backend=preset["loss_backend"], fused_linear=fused_linear, precision=preset["precision"],
                       device=device, max_steps=steps, log_every=1, save_every=steps // 2, keep_last=1,
                       eval_batches=0, progress=False, tensorboard=False, seed=7)


def measure(label: str, path: str, config: TrainConfig, device: str) -> dict:
    """One run ("full", or "resumed": stopped at half the steps, then resumed): its row of the table."""
    row = {"path": path, "run": label, "steps_wanted": config.max_steps}
    if device == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        if label == "resumed":
            part = train(config, stop_after=config.max_steps // 2)
            part.student = None  # its copy of the student goes before the resumed run makes its own
            result = train(config.override({"resume": True}))
            # the step before the first one this process logged: a resume that started over gives 0
            row["resumed_at"] = result.history[0]["step"] - 1 if result.history else None
        else:
            result = train(config)
        if device == "cuda":
            torch.cuda.synchronize()
    except Exception as exc:  # the row records it; the run is a failure
        traceback.print_exc()
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    finally:
        row["seconds"] = round(time.perf_counter() - start, 2)
    records = read_records(Path(config.output_dir) / "metrics.jsonl")  # both halves of a resumed run
    rates = [r["tokens_per_s"] for r in records[max(1, len(records) // 10):]]
    row.update(steps=result.steps, skipped=result.skipped_steps, losses=[r["loss"] for r in records],
               tokens_per_s=statistics.median(rates) if rates else None,
               peak_gpu_mib=torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None)
    result.student = None
    return row


def max_abs_diff(a: list[float], b: list[float]) -> float | None:
    return max((abs(x - y) for x, y in zip(a, b)), default=None) if len(a) == len(b) else None


def compare(rows: list[dict], steps: int) -> dict:
    """Per path: full vs resumed over each half; and fused-linear vs logits (full runs)."""
    losses = {(r["path"], r["run"]): r.get("losses", []) for r in rows}
    half = steps // 2
    out = {}
    for path in PATHS:
        full, resumed = losses.get((path, "full"), []), losses.get((path, "resumed"), [])
        if len(full) == len(resumed) == steps:
            out[f"{path}: resumed vs full, steps {half + 1}-{steps}"] = max_abs_diff(full[half:], resumed[half:])
            out[f"{path}: resumed vs full, steps 1-{half} (same steps, run-to-run noise)"] = max_abs_diff(
                full[:half], resumed[:half])
    a, b = losses.get(("logits", "full"), []), losses.get(("fused-linear", "full"), [])
    if a and len(a) == len(b):
        out["fused-linear vs logits, full runs"] = max_abs_diff(a, b)
    return out


def failures(rows: list[dict], comparisons: dict, device: str) -> list[str]:
    """What went wrong, one line each; empty when the check passed."""
    problems = []
    for r in rows:
        name = f"{r['path']} {r['run']}"
        if "error" in r:
            problems.append(f"{name}: {r['error']}")
            continue
        losses = r["losses"]
        if r["steps"] != r["steps_wanted"] or len(losses) != r["steps_wanted"]:
            problems.append(f"{name}: {r['steps']} steps and {len(losses)} logged losses, {r['steps_wanted']} wanted")
        if r["run"] == "resumed" and r["resumed_at"] != r["steps_wanted"] // 2:
            problems.append(f"{name}: continued from step {r['resumed_at']}, not from the checkpoint of step "
                            f"{r['steps_wanted'] // 2}")
        if r["skipped"]:
            problems.append(f"{name}: {r['skipped']} steps skipped (non-finite loss or gradient)")
        if not all(math.isfinite(x) for x in losses):
            problems.append(f"{name}: non-finite loss")
        elif losses:
            quarter = max(1, len(losses) // 4)
            first, last = statistics.fmean(losses[:quarter]), statistics.fmean(losses[-quarter:])
            if not last < first:
                problems.append(f"{name}: loss did not decrease (first quarter {first:.4f}, last quarter {last:.4f})")
    expected = 2 * len(PATHS) + 1  # both halves of each path, and the path comparison
    if len(comparisons) != expected:
        problems.append(f"only {len(comparisons)} of {expected} loss comparisons could be made")
    if device == "cpu":  # bit-identical resume is the guarantee on the CPU
        for name, diff in comparisons.items():
            if "resumed vs full" in name and diff != 0:
                problems.append(f"{name}: max |diff| {diff} (bit-identical expected on the CPU)")
    return problems


def table(rows: list[dict]) -> str:
    lines = ["| path | run | steps | first loss | last loss | tokens/s | peak GPU MiB | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['path']} | {r['run']} | error: {r['error'][:60]} | | | | | {r['seconds']} |")
            continue
        losses = r["losses"] or [math.nan]
        rate = f"{r['tokens_per_s']:.0f}" if r["tokens_per_s"] is not None else "-"
        peak = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "-"
        lines.append(f"| {r['path']} | {r['run']} | {r['steps']} | {losses[0]:.4f} | {losses[-1]:.4f} | {rate} "
                     f"| {peak} | {r['seconds']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--steps", type=int, help="optimizer steps per run, even (default: the device's preset)")
    parser.add_argument("--out", type=Path, default=default_out("gpu_train_smoke.json"), help="write the results as JSON here")
    args = parser.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    preset = PRESETS[device]
    steps = args.steps or preset["steps"]
    if steps < 4 or steps % 2:
        parser.error(f"--steps {steps}: give an even number >= 4 (the resumed run stops at half)")
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()  # no per-load reports in the output
    hf_logging.disable_progress_bar()

    machine = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    results = {"machine": machine, "device": device, "steps": steps, "preset": preset, "rows": []}
    tmp = Path(tempfile.mkdtemp(prefix="distilx-train-smoke-"))
    try:
        paragraphs = repository_paragraphs()
        corpus = tmp / "corpus.txt"
        corpus.write_text("\n".join(paragraphs) + "\n", encoding="utf-8")
        teacher = build_teacher(tmp / "teacher", paragraphs, preset)
        results["vocab_size"] = json.loads((teacher / "config.json").read_text())["vocab_size"]
        print(f"machine: {machine}; teacher BERT {preset['layers']} layers, hidden {preset['hidden']}, "
              f"V={results['vocab_size']} (WordPiece on {len(paragraphs)} paragraphs of the repository's docs), "
              f"student {(preset['layers'] + 1) // 2} layers; {preset['batch_size']} x {preset['seq_len']} packed, "
              f"{preset['precision']}, loss backend {preset['loss_backend']}, {steps} steps per run", flush=True)
        for path, fused_linear in PATHS.items():
            for label in ("full", "resumed"):
                config = run_config(teacher, corpus, tmp / f"{path}-{label}", preset, device, fused_linear, steps)
                row = measure(label, path, config, device)
                results["rows"].append(row)
                print(f"  {path} {label}: {row.get('error') or 'ok'} ({row['seconds']} s)", flush=True)
                write_json(args.out, results)  # a run cut short by a time limit leaves the rows so far
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = results["rows"]
    results["comparisons"] = comparisons = compare(rows, steps)
    results["problems"] = problems = failures(rows, comparisons, device)
    write_json(args.out, results)
    print(table(rows))
    for name, diff in comparisons.items():
        print(f"max |loss diff| {name}: {diff}")
    print("PASS" if not problems else "FAIL:\n  " + "\n  ".join(problems))
    if args.out is not None:
        print(f"results written to {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
