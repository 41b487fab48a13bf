"""The demo's measurements beside DistilBERT's claims, and the tables it prints.

DistilBERT (Sanh et al., 2019) "reduce[s] the size of a BERT model by 40%, while retaining 97% of its
language understanding capabilities and being 60% faster". `claims_table` puts the demo's own numbers
beside those three, each followed by a line saying what it was measured on:

- retention: the task-stage student's held-out accuracy / its teacher's (the classifier stage, where
  "keeps N% of the teacher" is defined);
- size: parameter counts (tied tensors once) and the bytes of the saved weights (model.safetensors);
- speed-up: `interleaved_speed`, the median full forward of the same batch, teacher and student
  alternated repetition by repetition so that a change of machine load hits both alike.

No number here is chosen after seeing it: the demo's settings are fixed, seeded and deterministic on
CPU, so the same command prints the same table (the timings aside).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torch import nn

from .report import Measure, comparison_table, plural

__all__ = ["SEED_CLAIMS", "interleaved_speed", "model_size", "pretrain_table", "claims_table"]

# DistilBERT's headline, as the paper's abstract states it
SEED_CLAIMS = {"retention": "97% of BERT's performance (GLUE)", "size": "40% smaller", "speed": "60% faster"}


@torch.no_grad()
def interleaved_speed(teacher: nn.Module, student: nn.Module, batch: dict, *, repeats: int = 20,
                      warmup: int = 2) -> dict:
    """Median seconds of one full forward of `teacher` and of `student` on the same `batch` (each model
    given the inputs its forward takes), `repeats` times each, alternating T, S, T, S… after `warmup`
    untimed rounds; the ratio is the speed-up."""
    from .models.classification import forward_inputs

    times: dict[str, list[float]] = {"teacher": [], "student": []}
    models = {"teacher": teacher.eval(), "student": student.eval()}
    inputs = {name: forward_inputs(model, batch) for name, model in models.items()}
    for round_ in range(warmup + repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model(**inputs[name])
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    t, s = statistics.median(times["teacher"]), statistics.median(times["student"])
    return {"teacher_forward_s": t, "student_forward_s": s, "speedup": t / s, "repeats": repeats,
            "batch_shape": list(batch["input_ids"].shape), "threads": torch.get_num_threads()}


def _weights_mb(folder: Path) -> float:
    """Megabytes (10^6 bytes) of a model folder's saved weights (safetensors / bin files)."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")) / 1e6


def model_size(teacher: nn.Module, student: nn.Module, teacher_dir: str | Path, student_dir: str | Path) -> dict:
    """Parameters (tied tensors once), the embedding layer's share of them, and MB of saved weights."""
    from .evaluation import count_parameters
    from .models.adapters import encoder_adapter

    def embedding_params(model):
        return sum(p.numel() for p in encoder_adapter(model).embeddings(model).parameters())

    return {"teacher_params": count_parameters(teacher), "student_params": count_parameters(student),
            "embedding_params": embedding_params(teacher), "student_embedding_params": embedding_params(student),
            "teacher_mb": _weights_mb(Path(teacher_dir)), "student_mb": _weights_mb(Path(student_dir))}


# rows of the pre-training stage's table: each metric on the masking the student trained with and on uniform
PRETRAIN_MEASURES = [Measure("perplexity, frequency masking", "perplexity_frequency", ".1f"),
                     Measure("perplexity, uniform masking", "perplexity_uniform", ".1f"),
                     Measure("masked-token accuracy, uniform", "accuracy_uniform", ".1%")]


def pretrain_table(by_masking: dict[str, dict]) -> str:
    """The two held-out evaluations ("frequency": the masking the student trained with, "uniform";
    evaluation.evaluate's results) as one table of the shared shape (report.comparison_table)."""
    freq, uniform = by_masking["frequency"], by_masking["uniform"]
    merged = dict(uniform)
    for masking, m in by_masking.items():
        for key in ("perplexity", "accuracy"):
            for side in ("teacher", "student"):
                merged[f"{side}_{key}_{masking}"] = m[f"{side}_{key}"]
    extra = [("top-1 agreement, freq. / uniform", f"{freq['top1_agreement']:.1%} / {uniform['top1_agreement']:.1%}"),
             ("KL(teacher||student), freq. / unif.", f"{freq['kl_to_teacher']:.2f} / {uniform['kl_to_teacher']:.2f}")]
    return comparison_table(merged, PRETRAIN_MEASURES, what=f"{plural(uniform['targets'], 'masked token')} per masking",
                            extra_rows=extra)


def claims_table(result: dict) -> str:
    """DistilBERT's three claims beside this run's numbers (`run_demo`'s result: its "task" and / or
    "pretrain" entries), one row per number, each followed by what it was measured on."""
    lines = [f"{'':<11}{'DistilBERT paper':<34}this run"]

    def row(name: str, claim: str, ours: str, measured_on: str) -> None:
        lines.append(f"{name:<11}{claim:<34}{ours}")
        lines.append(f"{'':<13}measured on: {measured_on}")

    task, pre = result.get("task"), result.get("pretrain")
    if task:
        m, setup = task["metrics"], task["setup"]
        row("retention", SEED_CLAIMS["retention"],
            f"{m['accuracy_retention']:.1%} of the teacher's accuracy ({m['student_accuracy']:.1%} vs "
            f"{m['teacher_accuracy']:.1%})",
            f"{plural(m['examples'], 'held-out paragraph')} of the kernel-docs subsystems task ({setup['classes']} "
            f"classes, from files never trained on); {m['student_layers']}-layer student after "
            f"{plural(setup['steps'], 'step')}")
    else:
        row("retention", SEED_CLAIMS["retention"], "not measured", "the task stage did not run (--stage task or both)")
    stages = [(name, result[name]) for name in ("task", "pretrain") if result.get(name)]
    for i, (name, stage) in enumerate(stages):
        s = stage["size"]
        what = "the task-stage classifiers" if name == "task" else "the pre-training stage's masked-LM models"
        row("size" if i == 0 else "", SEED_CLAIMS["size"] if i == 0 else "",
            f"{1 - s['student_params'] / s['teacher_params']:.0%} smaller: {s['teacher_params'] / 1e6:.1f} M -> "
            f"{s['student_params'] / 1e6:.1f} M parameters, {s['teacher_mb']:.1f} -> {s['student_mb']:.1f} MB",
            f"{what}: parameters and model.safetensors; the embeddings ({s['embedding_params'] / 1e6:.1f} M) "
            "are kept whole, as DistilBERT keeps BERT's")
    for i, (name, stage) in enumerate(stages):
        v = stage["speed"]
        what = "the task-stage classifiers" if name == "task" else "the masked-LM models, vocabulary projection included"
        rows, cols = v["batch_shape"]
        row("speed-up" if i == 0 else "", SEED_CLAIMS["speed"] if i == 0 else "",
            f"{v['speedup']:.2f}x, i.e. {v['speedup'] - 1:.0%} faster",
            f"{what}: median full forward of one batch ({rows} x {cols} tokens, CPU, "
            f"{plural(v['threads'], 'thread')}), teacher and student alternated {v['repeats']} times")
    return "\n".join(lines)
