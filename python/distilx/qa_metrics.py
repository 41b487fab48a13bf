"""SQuAD scoring: exact match and F1 with the standard answer normalisation (the official v1.1 and v2.0
evaluation scripts' definitions).

- normalisation: lower case, punctuation removed, the articles a / an / the removed, whitespace collapsed;
- exact match of a question: 1 when the normalised prediction equals a normalised gold answer;
- F1 of a question: token-level F1 of the normalised prediction against each gold answer (bag of tokens,
  the overlap counted with multiplicity), the best over the gold answers;
- v1.1: every question has gold answers; v2.0: a question without one is right when the prediction is
  "" (and its F1 is 1, else 0); gold answers that normalise to nothing are dropped, as the v2.0 script does.
Totals are percentages over the questions, as the official scripts print them. v2.0 also reports the
answerable (`has_answer_*`) and unanswerable (`no_answer_*`) questions apart.
"""

from __future__ import annotations

import collections
import re
import string

__all__ = ["normalize_answer", "exact_match", "f1", "squad_scores"]

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the official scripts' normalize_answer)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str, version: str = "1.1") -> float:
    """Token-level F1 of one prediction against one gold answer. v2.0: if either is empty after
    normalisation, 1 when both are, else 0; v1.1 (whose gold answers are never empty): 0 without overlap."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if version == "2.0" and (not predicted or not expected):
        return float(predicted == expected)
    overlap = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def _gold(answers: list[str], version: str) -> list[str]:
    if version == "1.1":
        return answers
    kept = [a for a in answers if normalize_answer(a)]
    return kept or [""]


def squad_scores(predictions: dict[str, str], gold: dict[str, list[str]], version: str) -> dict:
    """{"exact_match", "f1"} in percent over the questions of `gold` (id -> gold answer texts, [] for no answer),
    + for v2.0 the same over the answerable and the unanswerable questions. A question without a
    prediction counts as answered ""."""
    if version not in ("1.1", "2.0"):
        raise ValueError(f"SQuAD version {version!r}; choose '1.1' or '2.0'")
    if not gold:
        raise ValueError("no questions to score")
    exact, f1s, has_answer = {}, {}, {}
    for qid, answers in gold.items():
        if version == "1.1" and not answers:
            raise ValueError(f"question {qid!r} has no gold answer, which SQuAD v1.1 scoring cannot score; score it as "
                             "v2.0 (questions without an answer)")
        prediction = predictions.get(qid, "")
        golds = _gold(answers, version)
        exact[qid] = max(exact_match(prediction, g) for g in golds)
        f1s[qid] = max(f1(prediction, g, version) for g in golds)
        has_answer[qid] = bool(answers)
    scores = {"exact_match": 100.0 * sum(exact.values()) / len(gold), "f1": 100.0 * sum(f1s.values()) / len(gold),
              "questions": len(gold)}
    if version == "2.0":
        for name, wanted in (("has_answer", True), ("no_answer", False)):
            ids = [q for q in gold if has_answer[q] == wanted]
            scores[f"{name}_questions"] = len(ids)
            scores[f"{name}_exact_match"] = 100.0 * sum(exact[q] for q in ids) / len(ids) if ids else None
            scores[f"{name}_f1"] = 100.0 * sum(f1s[q] for q in ids) / len(ids) if ids else None
    return scores
