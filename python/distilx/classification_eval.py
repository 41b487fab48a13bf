"""Held-out evaluation of a fine-tuned classifier and its student on the same labelled examples.

Metrics (`distilx eval --task sequence-classification`, and the end of a classification run):
- `*_accuracy`: share of the examples whose highest logit is the gold class;
- `*_macro_f1`: the mean over classes of F1 = 2·TP / (2·TP + FP + FN), over the classes that occur among
  the gold labels or that model's predictions (scikit-learn's default label set for average="macro");
- `accuracy_retention`, `macro_f1_retention`: student / teacher (the "keeps 97% of the teacher" number);
- `agreement`: share of the examples where student and teacher predict the same class;
- `*_params`, `*_layers`, `*_hidden`, `*_heads`, `*_intermediate`, `*_forward_s`, `speed_ratio`, `speedup`:
  as in evaluation.py — the shape, parameter counts, and the median time of full forwards on the same
  batches, measured in this run, interleaved.

Multi-label teachers (a label is predicted when its sigmoid reaches `threshold`, default 0.5):
- `*_micro_f1`: 2·TP / (2·TP + FP + FN) over every (example, label) decision;
- `*_macro_f1`: the mean over labels of that F1, over the labels present among the gold labels or that
  model's predictions (as for single-label);
- `*_subset_accuracy`: share of the examples whose predicted label set is exactly the gold one;
- `micro_f1_retention`, `macro_f1_retention`; `agreement`: share of examples with the same predicted set.
Regression teachers:
- `*_pearson`, `*_spearman` (Pearson of the ranks, ties averaged) with the gold values, `*_mse`;
  None where undefined (constant outputs);
- `pearson_retention`, `spearman_retention`; `agreement`: the Pearson correlation of student and teacher.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .evaluation import autocast_for, count_parameters, forward_seconds, model_folders, shape_entries
from .models.adapters import encoder_adapter
from .losses.heads import MULTI_LABEL, REGRESSION
from .models.classification import check_classifier, forward_inputs, load_classifier
from .preflight import check_positions
from .report import model_facts, retention
from .tasks.labelled_data import LabelledExamples, LabelSet

__all__ = ["evaluate_classification", "predict", "logits_of", "accuracy", "macro_f1", "multi_label_f1", "pearson",
           "spearman"]


def accuracy(predicted: list[int], gold: list[int]) -> float:
    return sum(p == g for p, g in zip(predicted, gold)) / len(gold)


def macro_f1(predicted: list[int], gold: list[int]) -> float:
    """Macro-averaged F1 over the classes present in `gold` or `predicted`."""
    scores = []
    for c in sorted(set(gold) | set(predicted)):
        tp = sum(p == c and g == c for p, g in zip(predicted, gold))
        fp = sum(p == c and g != c for p, g in zip(predicted, gold))
        fn = sum(p != c and g == c for p, g in zip(predicted, gold))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def multi_label_f1(predicted: list[list[int]], gold: list[list[int]]) -> tuple[float, float]:
    """(micro-F1, macro-F1) of 0/1 rows [example][label]; macro over the labels present in gold or predicted."""
    p, g = np.asarray(predicted, dtype=bool), np.asarray(gold, dtype=bool)
    tp, fp, fn = (p & g).sum(0), (p & ~g).sum(0), (~p & g).sum(0)
    micro_denominator = 2 * tp.sum() + fp.sum() + fn.sum()
    present = (tp + fp + fn) > 0
    macro = float(np.mean(2 * tp[present] / (2 * tp + fp + fn)[present])) if present.any() else 0.0
    return (float(2 * tp.sum() / micro_denominator) if micro_denominator else 0.0), macro


def pearson(x, y) -> float | None:
    """Pearson's correlation of two sequences of numbers; None when one is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((dx * dx).sum() * (dy * dy).sum()))
    return float((dx * dy).sum() / denominator) if denominator > 0 else None


def _ranks(x) -> np.ndarray:
    """1-based ranks, tied values sharing their mean rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    start = 0
    while start < len(x):
        end = start
        while end + 1 < len(x) and x[order[end + 1]] == x[order[start]]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x, y) -> float | None:
    """Spearman's rank correlation (Pearson of the ranks, ties averaged); None when one side is constant."""
    return pearson(_ranks(x), _ranks(y))


def size_and_speed(teacher, student, t_time: float, s_time: float) -> dict:
    """The evaluations' size and speed entries: parameters, layers, the shape, median forward seconds and their ratios."""
    return model_facts(teacher_params=count_parameters(teacher), student_params=count_parameters(student),
                       teacher_layers=len(encoder_adapter(teacher).layers(teacher)),
                       student_layers=len(encoder_adapter(student).layers(student)),
                       teacher_forward_s=t_time, student_forward_s=s_time, shape=shape_entries(teacher, student))


def evaluation_inputs(teacher, student, files, tokenizer, seq_len: int, load, check, caller: str):
    """(teacher, student, labels, files, tokenizer) of an evaluation, checked: the models (folders loaded by
    `load(path, role)`, objects passed through `check(model, role)`) share one label set, embed seq_len
    positions and take the tokenizer (default: the student's folder, else the teacher's; check_vocabulary);
    files as a list."""
    from .data import _as_tokenizer
    from .models import check_vocabulary

    folders = model_folders(teacher, student, tokenizer)
    if tokenizer is None:
        tokenizer = student if isinstance(student, (str, Path)) else teacher
        if not isinstance(tokenizer, (str, Path)):
            raise ValueError(f"{caller} needs `tokenizer` when both models are passed as objects")
    files = [files] if isinstance(files, (str, Path)) else files

    def as_model(model, role):
        if isinstance(model, (str, Path)):
            return load(model, role)
        check(model, role)
        return model

    teacher, student = as_model(teacher, "teacher"), as_model(student, "student")
    labels = LabelSet.shared(teacher, student)
    check_positions(seq_len, teacher=teacher, student=student)
    check_vocabulary(_as_tokenizer(tokenizer), teacher=teacher, student=student, **folders)
    return teacher, student, labels, files, tokenizer


@torch.no_grad()
def logits_of(model, examples: LabelledExamples, *, batch_size: int = 32, max_batches: int | None = None,
              device: str | torch.device = "cpu") -> torch.Tensor:
    """`model`'s logits [N, C] (fp32, on the CPU) for the examples of examples.in_order(...), in eval mode."""
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    rows = []
    for batch in examples.in_order(batch_size, max_batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast_for(device):
            rows.append(model(**forward_inputs(model, batch)).logits.float().cpu())
    model.train(was_training)
    return torch.cat(rows) if rows else torch.zeros(0, model.config.num_labels)


def predict(model, examples: LabelledExamples, *, batch_size: int = 32, max_batches: int | None = None,
            device: str | torch.device = "cpu") -> list[int]:
    """The class `model` predicts (highest logit) for each example of examples.in_order(...), in eval mode."""
    return logits_of(model, examples, batch_size=batch_size, max_batches=max_batches, device=device).argmax(-1).tolist()


def _problem_metrics(problem: str, logits: dict, gold: list, threshold: float) -> dict:
    """The quality metrics of each role's logits (module docstring) for `problem`."""
    out = {}
    if problem == REGRESSION:
        values = {role: x[:, 0].tolist() for role, x in logits.items()}
        for role, v in values.items():
            out.update({f"{role}_pearson": pearson(v, gold), f"{role}_spearman": spearman(v, gold),
                        f"{role}_mse": float(np.mean((np.asarray(v) - np.asarray(gold)) ** 2))})
        for key in ("pearson", "spearman"):
            out[f"{key}_retention"] = retention(out[f"student_{key}"], out[f"teacher_{key}"])
        out["agreement"] = pearson(values["student"], values["teacher"])
        return out
    if problem == MULTI_LABEL:
        decided = {role: (torch.sigmoid(x) >= threshold).int().tolist() for role, x in logits.items()}
        for role, p in decided.items():
            micro, macro = multi_label_f1(p, gold)
            out.update({f"{role}_micro_f1": micro, f"{role}_macro_f1": macro,
                        f"{role}_subset_accuracy": accuracy(p, [[int(v) for v in row] for row in gold])})
        for key in ("micro_f1", "macro_f1"):
            out[f"{key}_retention"] = retention(out[f"student_{key}"], out[f"teacher_{key}"])
        out.update(agreement=accuracy(decided["student"], decided["teacher"]), threshold=threshold)
        return out
    predicted = {role: x.argmax(-1).tolist() for role, x in logits.items()}
    for role, p in predicted.items():
        out.update({f"{role}_accuracy": accuracy(p, gold), f"{role}_macro_f1": macro_f1(p, gold)})
    out["accuracy_retention"] = retention(out["student_accuracy"], out["teacher_accuracy"])  # None: teacher at 0
    out["macro_f1_retention"] = retention(out["student_macro_f1"], out["teacher_macro_f1"])
    out["agreement"] = accuracy(predicted["student"], predicted["teacher"])
    return out


@torch.no_grad()
def evaluate_classification(teacher, student, files, tokenizer=None, *, text_fields=("text",),
                            label_field: str = "label", seq_len: int = 128, batch_size: int = 32,
                            max_batches: int | None = None, device: str | torch.device = "cpu",
                            speed_batches: int = 3, threshold: float = 0.5) -> dict:
    """Evaluate a classifier `teacher` and its `student` (models or folders) on held-out labelled `files`.

    tokenizer: the tokenizer's folder or tokenizer.json (default: the student's folder, else the
    teacher's). max_batches: evaluate only the first max_batches x batch_size examples (None: all).
    threshold: multi-label teachers: a label is predicted when its sigmoid reaches it.
    """
    teacher, student, labels, files, tokenizer = evaluation_inputs(teacher, student, files, tokenizer, seq_len,
                                                                   load_classifier, check_classifier,
                                                                   "evaluate_classification")
    device = torch.device(device)
    examples = LabelledExamples(files, tokenizer, text_fields=list(text_fields), label_field=label_field,
                                labels=labels, seq_len=seq_len)
    if len(examples) == 0:
        raise ValueError(f"no labelled examples in {[str(f) for f in files]}")
    gold = examples.labels[:examples.count(batch_size, max_batches)]
    logits = {role: logits_of(m, examples, batch_size=batch_size, max_batches=max_batches, device=device)
              for role, m in (("teacher", teacher), ("student", student))}
    kept = [{k: v.to(device) for k, v in batch.items()}
            for batch, _ in zip(examples.in_order(batch_size, max_batches), range(speed_batches))]
    t_time, s_time = forward_seconds(teacher, student, kept, device)
    return {
        "task": "sequence-classification",
        "problem_type": labels.problem,
        "examples": len(gold),
        **_problem_metrics(labels.problem, logits, gold, threshold),
        **size_and_speed(teacher, student, t_time, s_time),
    }
