"""Held-out evaluation of a fine-tuned token classifier and its student on the same tagged sentences.

Each word's predicted tag is the highest logit at its FIRST sub-token (where training puts its label),
whatever `label_all_subtokens` was in training. Metrics (`distilx eval --task token-classification`,
and the end of a token-classification run):
- `*_entity_precision`, `*_entity_recall`, `*_entity_f1`: entity-level, micro-averaged over the sentences
  (entity_scores.py: the conlleval rules by default, the scheme's own with `strict`), per entity type in
  `*_per_type`; absent (None) when the tags are not entity tags (`tag_scheme` "none", e.g. POS tags);
- `*_token_accuracy`: share of the words tagged right;
- `entity_f1_retention`, `token_accuracy_retention`: student / teacher; `agreement`: share of the words
  where the two predict the same tag;
- `*_params`, `*_layers`, `*_forward_s`, `speed_ratio`, `speedup`: as in evaluation.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .classification_eval import evaluation_inputs, size_and_speed
from .entity_scores import SCHEMES, detect_scheme, entity_scores, entity_tag_set, token_accuracy
from .evaluation import autocast_for, check_output_file, forward_seconds
from .models.classification import forward_inputs
from .models.token_classification import check_token_classifier, load_token_classifier
from .tasks.tagged_data import TaggedExamples

__all__ = ["evaluate_token_classification", "predict_tags", "resolve_scheme", "checked_scheme", "TAG_SCHEMES"]

TAG_SCHEMES = ("auto",) + SCHEMES + ("none",)


@torch.no_grad()
def predict_tags(model, examples: TaggedExamples, *, batch_size: int = 32, max_batches: int | None = None,
                 device: str | torch.device = "cpu") -> list[list[int]]:
    """Per sentence of examples.in_order(...), the tag id `model` predicts for each word (highest logit at the
    word's first sub-token), in eval mode."""
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    predicted, index = [], 0
    for batch in examples.in_order(batch_size, max_batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast_for(device):
            best = model(**forward_inputs(model, batch)).logits.float().argmax(-1).tolist()
        for row in best:
            predicted.append([row[p] for p in examples.first_subtokens(index)])
            index += 1
    model.train(was_training)
    return predicted


def resolve_scheme(tag_scheme: str, names, gold: list[list[str]]) -> str | None:
    """The scheme entities are read with: `tag_scheme` itself, detected ("auto"), or None ("none", or
    tags that are not entity tags)."""
    if tag_scheme not in TAG_SCHEMES:
        raise ValueError(f"tag_scheme={tag_scheme!r}; choose one of {TAG_SCHEMES}")
    if tag_scheme == "none":
        return None
    if tag_scheme == "auto":
        return detect_scheme(names, gold)
    if not entity_tag_set(names):
        raise ValueError(f"tag_scheme={tag_scheme!r}, but the teacher's tags {list(names)} are not all entity tags "
                         "(O, or B-/I-/E-/S- and a type): pass --tag-scheme none to score token accuracy only")
    ends = sorted(n for n in names if n[0] in "ES")
    if (tag_scheme == "IOBES") != bool(ends):  # the tag set decides between IOBES and the IOB schemes
        found = f"has {ends[0]!r}, an IOBES tag" if ends else "has no E- or S- tag"
        raise ValueError(f"tag_scheme={tag_scheme!r}, but the teacher's tag set {found}: entities would be read "
                         f"wrongly; pass --tag-scheme {'IOBES' if ends else 'IOB2 (or IOB1)'}, or auto")
    return tag_scheme


def checked_scheme(tag_scheme: str, strict: bool, names, gold: list[list[str]]) -> str | None:
    """`resolve_scheme`, and strict scoring only with a scheme (before a run's first step, and at its end)."""
    scheme = resolve_scheme(tag_scheme, names, gold)
    if strict and scheme is None:
        raise ValueError("strict entity scoring needs entity tags and a scheme: drop --strict-entities, or pass "
                         f"--tag-scheme one of {SCHEMES}")
    return scheme


@torch.no_grad()
def evaluate_token_classification(teacher, student, files, tokenizer=None, *, tokens_field: str = "tokens",
                                  tags_field: str = "tags", seq_len: int = 128, batch_size: int = 32,
                                  max_batches: int | None = None, device: str | torch.device = "cpu",
                                  tag_scheme: str = "auto", strict: bool = False, speed_batches: int = 3,
                                  predictions: str | Path | None = None) -> dict:
    """Evaluate a token-classifier `teacher` and its `student` (models or folders) on held-out tagged `files`.

    tokenizer: the tokenizer's folder (default: the student's folder, else the teacher's). max_batches:
    only the first max_batches x batch_size sentences (None: all). tag_scheme: "auto", "IOB1", "IOB2",
    "IOBES" or "none"; strict: read entities by the scheme's rules instead of conlleval's.
    predictions: write the student's tags there, one JSON list of tag names per sentence, in input order.
    """
    if predictions is not None:
        check_output_file(predictions, "predictions")
    teacher, student, labels, files, tokenizer = evaluation_inputs(teacher, student, files, tokenizer, seq_len,
                                                                   load_token_classifier, check_token_classifier,
                                                                   "evaluate_token_classification")
    device = torch.device(device)
    examples = TaggedExamples(files, tokenizer, tokens_field=tokens_field, tags_field=tags_field, labels=labels,
                              seq_len=seq_len)
    if len(examples) == 0:
        raise ValueError(f"no tagged sentences in {[str(f) for f in files]}")
    names = labels.names
    gold = [[names[t] for t in tags] for tags in examples.tags[:examples.count(batch_size, max_batches)]]
    scheme = checked_scheme(tag_scheme, strict, names, gold)
    predicted = {}
    for role, model in (("teacher", teacher), ("student", student)):
        ids = predict_tags(model, examples, batch_size=batch_size, max_batches=max_batches, device=device)
        predicted[role] = [[names[t] for t in row] for row in ids]
    if predictions is not None:
        Path(predictions).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in predicted["student"]),
                                     encoding="utf-8")
    kept = [{k: v.to(device) for k, v in batch.items()}
            for batch, _ in zip(examples.in_order(batch_size, max_batches), range(speed_batches))]
    t_time, s_time = forward_seconds(teacher, student, kept, device)
    metrics = {"task": "token-classification", "sentences": len(gold), "words": sum(map(len, gold)),
               "tag_scheme": scheme or "none", "entity_rules": "strict" if strict else "conlleval"}
    for role in ("teacher", "student"):
        metrics[f"{role}_token_accuracy"] = token_accuracy(gold, predicted[role])
        scores = entity_scores(gold, predicted[role], scheme, strict) if scheme else None
        for key in ("precision", "recall", "f1"):
            metrics[f"{role}_entity_{key}"] = scores[key] if scores else None
        metrics[f"{role}_per_type"] = scores["per_type"] if scores else None
    metrics["gold_entities"] = entity_scores(gold, gold, scheme, strict)["gold_entities"] if scheme else None
    t_f1, t_acc = metrics["teacher_entity_f1"], metrics["teacher_token_accuracy"]
    metrics.update({
        "entity_f1_retention": metrics["student_entity_f1"] / t_f1 if t_f1 else None,  # None: no entities, or 0
        "token_accuracy_retention": metrics["student_token_accuracy"] / t_acc if t_acc else None,
        "agreement": token_accuracy(predicted["teacher"], predicted["student"]),
        **size_and_speed(teacher, student, t_time, s_time),
    })
    return metrics
