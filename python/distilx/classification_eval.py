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
"""

from __future__ import annotations

from pathlib import Path

import torch

from .evaluation import autocast_for, count_parameters, forward_seconds, shape_entries
from .models.adapters import encoder_adapter
from .models.classification import check_classifier, forward_inputs, load_classifier
from .preflight import check_positions
from .tasks.labelled_data import LabelledExamples, LabelSet

__all__ = ["evaluate_classification", "predict", "accuracy", "macro_f1"]


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


def _classifier(model):
    if isinstance(model, (str, Path)):
        return load_classifier(model)
    check_classifier(model)
    return model


@torch.no_grad()
def predict(model, examples: LabelledExamples, *, batch_size: int = 32, max_batches: int | None = None,
            device: str | torch.device = "cpu") -> list[int]:
    """The class `model` predicts (highest logit) for each example of examples.in_order(...), in eval mode."""
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    predicted = []
    for batch in examples.in_order(batch_size, max_batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast_for(device):
            predicted += model(**forward_inputs(model, batch)).logits.float().argmax(-1).tolist()
    model.train(was_training)
    return predicted


@torch.no_grad()
def evaluate_classification(teacher, student, files, tokenizer=None, *, text_fields=("text",),
                            label_field: str = "label", seq_len: int = 128, batch_size: int = 32,
                            max_batches: int | None = None, device: str | torch.device = "cpu",
                            speed_batches: int = 3) -> dict:
    """Evaluate a classifier `teacher` and its `student` (models or folders) on held-out labelled `files`.

    tokenizer: the tokenizer's folder or tokenizer.json (default: the student's folder, else the
    teacher's). max_batches: evaluate only the first max_batches x batch_size examples (None: all).
    """
    from .data import _as_tokenizer
    from .models import check_vocab

    if tokenizer is None:
        tokenizer = student if isinstance(student, (str, Path)) else teacher
        if not isinstance(tokenizer, (str, Path)):
            raise ValueError("evaluate_classification needs `tokenizer` when both models are passed as objects")
    if isinstance(files, (str, Path)):
        files = [files]
    device = torch.device(device)
    teacher, student = _classifier(teacher), _classifier(student)
    labels = LabelSet.shared(teacher, student)
    check_positions(seq_len, teacher=teacher, student=student)
    for model in (teacher, student):
        check_vocab(model, _as_tokenizer(tokenizer))
    examples = LabelledExamples(files, tokenizer, text_fields=list(text_fields), label_field=label_field,
                                labels=labels, seq_len=seq_len)
    if len(examples) == 0:
        raise ValueError(f"no labelled examples in {[str(f) for f in files]}")
    gold = examples.labels[:examples.count(batch_size, max_batches)]
    t_pred, s_pred = (predict(m, examples, batch_size=batch_size, max_batches=max_batches, device=device)
                      for m in (teacher, student))
    kept = [{k: v.to(device) for k, v in batch.items()}
            for batch, _ in zip(examples.in_order(batch_size, max_batches), range(speed_batches))]
    t_time, s_time = forward_seconds(teacher, student, kept, device)
    t_acc, s_acc = accuracy(t_pred, gold), accuracy(s_pred, gold)
    t_f1, s_f1 = macro_f1(t_pred, gold), macro_f1(s_pred, gold)
    return {
        "task": "sequence-classification",
        "examples": len(gold),
        "teacher_accuracy": t_acc,
        "student_accuracy": s_acc,
        "teacher_macro_f1": t_f1,
        "student_macro_f1": s_f1,
        "accuracy_retention": s_acc / t_acc if t_acc else None,  # None: the teacher got nothing right
        "macro_f1_retention": s_f1 / t_f1 if t_f1 else None,
        "agreement": accuracy(s_pred, t_pred),
        "teacher_params": count_parameters(teacher),
        "student_params": count_parameters(student),
        "teacher_layers": len(encoder_adapter(teacher).layers(teacher)),
        "student_layers": len(encoder_adapter(student).layers(student)),
        **shape_entries(teacher, student),
        "teacher_forward_s": t_time,
        "student_forward_s": s_time,
        "speed_ratio": s_time / t_time,
        "speedup": t_time / s_time,
    }
