"""Held-out evaluation of an extractive question-answering teacher and its student on the same questions.

Decoding (as the Hugging Face examples' postprocess_qa_predictions): for each question, over all its
windows, the `n_best_size` highest start and end logits of each window give the candidate spans; a span
must lie in the context, end at or after its start and be at most `max_answer_len` tokens long; its score
is start logit + end logit, and its text the context's characters from its first token's start to its last
token's end (the offset mapping). The answer is the best span's text. SQuAD v2.0 (questions may have no
answer): the "no answer" score is the lowest over the question's windows of the classifier token's start +
end logits, and the answer is "" when it beats the best span's score by more than
`null_score_diff_threshold`.

Metrics (`distilx eval --task question-answering`, and the end of a question-answering run):
- `*_exact_match`, `*_f1`: the official SQuAD scores in percent (qa_metrics.py), v1.1 or v2.0 (`squad_version`:
  v2.0 when a question has no answer, unless set); v2.0 adds `*_has_answer_f1`, `*_no_answer_exact_match`...;
- `exact_match_retention`, `f1_retention`: student / teacher; `agreement`: share of questions where both
  give the same answer text;
- `*_params`, `*_layers`, `*_hidden`, `*_heads`, `*_intermediate`, `*_forward_s`, `speed_ratio`, `speedup`: as
  in evaluation.py — the shape, parameter counts, and the median time of full forwards of the same batches
  of windows, measured in this run, interleaved.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .classification_eval import size_and_speed
from .evaluation import autocast_for, check_output_file, forward_seconds
from .models.question_answering import check_qa_model, load_qa_model, qa_inputs
from .preflight import check_positions
from .qa_metrics import squad_scores
from .tasks.qa_records import QARecord, read_qa_records
from .tasks.qa_windows import QAWindows

__all__ = ["evaluate_question_answering", "check_decoding", "window_logits", "decode_answers", "squad_version_of"]


def squad_version_of(records: list[QARecord]) -> str:
    """"2.0" when some question has no answer, else "1.1"."""
    return "2.0" if any(not r.answers for r in records) else "1.1"


@torch.no_grad()
def window_logits(model, windows: QAWindows, *, batch_size: int = 32, device="cpu") -> list[tuple[np.ndarray, np.ndarray]]:
    """(start logits, end logits) of every window, without its padding, in eval mode."""
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    out = []
    for batch in windows.in_order(batch_size):
        lengths = batch["attention_mask"].sum(1).tolist()
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast_for(device):
            result = model(**qa_inputs(model, batch))
        starts, ends = result.start_logits.float().cpu().numpy(), result.end_logits.float().cpu().numpy()
        out += [(s[:n], e[:n]) for s, e, n in zip(starts, ends, lengths)]
    model.train(was_training)
    return out


def _best_span(start: np.ndarray, end: np.ndarray, offsets: np.ndarray, n_best: int, max_answer_len: int):
    """(score, first char, end char) of the best allowed span of one window, or None."""
    in_context = offsets[:, 0] >= 0
    starts = np.argsort(start, kind="stable")[::-1][:n_best]
    ends = np.argsort(end, kind="stable")[::-1][:n_best]
    s, e = np.meshgrid(starts, ends, indexing="ij")
    allowed = in_context[s] & in_context[e] & (e >= s) & (e - s + 1 <= max_answer_len)
    if not allowed.any():
        return None
    scores = np.where(allowed, start[s] + end[e], -np.inf)
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(scores[i, j]), int(offsets[s[i, j], 0]), int(offsets[e[i, j], 1])


def decode_answers(windows: QAWindows, logits, *, n_best_size: int = 20, max_answer_len: int = 30,
                   null_score_diff_threshold: float = 0.0, version: str = "1.1") -> dict[str, str]:
    """{question id: answer text} from the windows' (start, end) logits ("" for "no answer", v2.0 only)."""
    best: dict[int, tuple[float, int, int]] = {}
    null: dict[int, float] = {}
    for w, (start, end) in enumerate(logits):
        r, cls = windows.record_of[w], windows.cls_index[w]
        null[r] = min(null.get(r, np.inf), float(start[cls] + end[cls]))
        span = _best_span(start, end, windows.offsets[w], n_best_size, max_answer_len)
        if span is not None and (r not in best or span[0] > best[r][0]):
            best[r] = span
    answers = {}
    for r, record in enumerate(windows.records):
        if r not in best:
            answers[record.id] = ""
            continue
        score, first, last = best[r]
        no_answer = version == "2.0" and null[r] - score > null_score_diff_threshold
        answers[record.id] = "" if no_answer else record.context[first:last]
    return answers


def check_decoding(n_best_size: int, max_answer_len: int, null_score_diff_threshold: float) -> None:
    """Raise unless the decoding settings can give an answer: a span needs at least one start and end
    candidate and at least one token; a NaN threshold would compare false with every score (always an answer)."""
    for name, value in (("n_best_size", n_best_size), ("max_answer_len", max_answer_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: decoding needs a whole number of at least 1 (the Hugging Face examples "
                             f"use n_best_size 20, max_answer_len 30); set --{name.replace('_', '-')}")
    if math.isnan(null_score_diff_threshold):
        raise ValueError(f"null_score_diff_threshold={null_score_diff_threshold!r} is not a number: give a finite "
                         "threshold (0.0 as the Hugging Face examples), or ±inf to always / never answer")


def _qa_model(model, role: str):
    if isinstance(model, (str, Path)):
        return load_qa_model(model, role)
    check_qa_model(model, role)
    return model


@torch.no_grad()
def evaluate_question_answering(teacher, student, files, tokenizer=None, *, seq_len: int = 384, doc_stride: int = 128,
                                max_query_len: int = 64, max_answer_len: int = 30, n_best_size: int = 20,
                                null_score_diff_threshold: float = 0.0, squad_version: str | None = None,
                                batch_size: int = 32, max_questions: int | None = None,
                                device: str | torch.device = "cpu", speed_batches: int = 3,
                                predictions_file: str | Path | None = None) -> dict:
    """Evaluate a QA `teacher` and its `student` (models or folders) on held-out SQuAD-layout `files`.

    tokenizer: the tokenizer's folder or tokenizer.json (default: the student's folder, else the teacher's).
    max_questions: only the first that many questions (None: all). predictions_file: write the student's
    answers there as the Hugging Face examples do, {id: answer text} ("" for no answer).
    """
    from .data import _as_tokenizer
    from .evaluation import model_folders
    from .models import check_vocabulary

    check_decoding(n_best_size, max_answer_len, null_score_diff_threshold)
    if predictions_file is not None:
        check_output_file(predictions_file, "predictions_file")
    folders = model_folders(teacher, student, tokenizer)
    if tokenizer is None:
        tokenizer = student if isinstance(student, (str, Path)) else teacher
        if not isinstance(tokenizer, (str, Path)):
            raise ValueError("evaluate_question_answering needs `tokenizer` when both models are passed as objects")
    files = [files] if isinstance(files, (str, Path)) else list(files)
    device = torch.device(device)
    teacher, student = _qa_model(teacher, "teacher"), _qa_model(student, "student")
    check_positions(seq_len, teacher=teacher, student=student)
    check_vocabulary(_as_tokenizer(tokenizer), teacher=teacher, student=student, **folders)
    records = read_qa_records(files)
    if max_questions is not None:
        records = records[:max_questions]
    if not records:
        raise ValueError(f"no questions in {[str(f) for f in files]}")
    version = squad_version or squad_version_of(records)
    if version == "1.1" and squad_version_of(records) == "2.0":
        raise ValueError("squad_version 1.1, but some questions have no answer: score them as 2.0")
    windows = QAWindows(records, tokenizer, seq_len=seq_len, doc_stride=doc_stride, max_query_len=max_query_len)
    decode = dict(n_best_size=n_best_size, max_answer_len=max_answer_len,
                  null_score_diff_threshold=null_score_diff_threshold, version=version)
    answers = {role: decode_answers(windows, window_logits(model, windows, batch_size=batch_size, device=device),
                                    **decode) for role, model in (("teacher", teacher), ("student", student))}
    if predictions_file is not None:
        Path(predictions_file).write_text(json.dumps(answers["student"], indent=2, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    gold = {r.id: [text for text, _ in r.answers] for r in records}
    scores = {role: squad_scores(answers[role], gold, version) for role in answers}
    kept = [{k: v.to(device) for k, v in batch.items()}
            for batch, _ in zip(windows.in_order(batch_size), range(speed_batches))]
    t_time, s_time = forward_seconds(teacher, student, [qa_inputs(teacher, b) for b in kept], device)
    metrics = {"task": "question-answering", "squad_version": version, "questions": len(records),
               "windows": len(windows)}
    for key in scores["teacher"]:
        if key.endswith("questions"):
            metrics[key] = scores["teacher"][key]
            continue
        metrics[f"teacher_{key}"], metrics[f"student_{key}"] = scores["teacher"][key], scores["student"][key]
    for key in ("exact_match", "f1"):
        metrics[f"{key}_retention"] = (scores["student"][key] / scores["teacher"][key]
                                       if scores["teacher"][key] else None)  # None: the teacher got nothing right
    metrics.update({
        "agreement": sum(answers["teacher"][q] == answers["student"][q] for q in gold) / len(gold),
        **size_and_speed(teacher, student, t_time, s_time),
    })
    return metrics
