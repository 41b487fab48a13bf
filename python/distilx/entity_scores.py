"""Entity-level precision, recall and F1 of tag sequences, and token accuracy (NER, chunking).

Tags are "O" or PREFIX-TYPE with PREFIX one of B, I, E, S ("B-PER", "I-NP"). An entity is a
(type, first word, word after the last) span of one sentence; a predicted entity counts as correct when
the gold sentence has the same span with the same type. Two ways to read the spans:

- default (`strict=False`) — the CoNLL `conlleval` rules, which `seqeval` applies by default and the
  Hugging Face examples report: any scheme (IOB1, IOB2, IOBES) is read leniently, an I- after O or after
  another type starts an entity, a type change ends one;
- strict (`strict=True`) — the scheme's own rules (`seqeval`'s mode="strict"): IOB2 entities are B-X I-X…;
  IOBES entities are S-X or B-X (I-X)… E-X; IOB1 entities start at an I-X that follows O or another type,
  or at a B-X that follows an X; sequences outside the rules (an I-X after O in IOB2, a B-X without its
  E-X in IOBES) give no entity.

`detect_scheme` picks the scheme from the tag set and the gold tags: IOBES when E- or S- tags exist, else
IOB1 when some gold entity starts with I-, else IOB2; None when the tags are not entity tags (POS tags):
then only token accuracy applies. Scores equal seqeval's on the same sequences (tests/test_token_classification.py).
"""

from __future__ import annotations

__all__ = ["SCHEMES", "split_tag", "entity_tag_set", "detect_scheme", "entities", "entity_scores", "token_accuracy"]

SCHEMES = ("IOB1", "IOB2", "IOBES")
_PREFIXES = {"IOB1": "BIO", "IOB2": "BIO", "IOBES": "BIOES"}
OUTSIDE = ("O", "")


def split_tag(tag: str) -> tuple[str, str]:
    """("O", "") for "O", else (prefix, type): "B-PER" -> ("B", "PER")."""
    if tag == "O":
        return OUTSIDE
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def entity_tag_set(names) -> bool:
    """Are all `names` entity tags ("O" or B-/I-/E-/S- followed by a type)?"""
    return all(n == "O" or (len(n) > 2 and n[0] in "BIES" and n[1] == "-") for n in names)


def detect_scheme(names, gold: list[list[str]]) -> str | None:
    """The tagging scheme of the tag set `names` and the gold sequences (module docstring); None: no entities."""
    if not entity_tag_set(names):
        return None
    if any(split_tag(n)[0] in ("E", "S") for n in names):
        return "IOBES"
    for sentence in gold:
        previous = OUTSIDE
        for tag in sentence:
            prefix, kind = split_tag(tag)
            if prefix == "I" and (previous[0] not in ("B", "I") or previous[1] != kind):
                return "IOB1"
            previous = (prefix, kind)
    return "IOB2"


# ---------------------------------------------------------------- the conlleval (default) reading

def _ends_before(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """Does the entity holding `previous` end before `current`?"""
    (p, p_type), (c, c_type) = previous, current
    if p in ("E", "S"):
        return True
    if p in ("B", "I") and c in ("B", "S", "O"):
        return True
    return p != "O" and p_type != c_type


def _starts_at(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """Does an entity start at `current`?"""
    (p, p_type), (c, c_type) = previous, current
    if c in ("B", "S"):
        return True
    if p in ("E", "S", "O") and c in ("E", "I"):
        return True
    return c != "O" and p_type != c_type


def _lenient_entities(tags: list[str]) -> list[tuple[str, int, int]]:
    spans, begin, previous = [], 0, OUTSIDE
    for i, tag in enumerate(list(tags) + ["O"]):
        current = split_tag(tag)
        if _ends_before(previous, current):
            spans.append((previous[1], begin, i))
        if _starts_at(previous, current):
            begin = i
        previous = current
    return spans


# ---------------------------------------------------------------- the strict readings

def _strict_start(scheme: str, previous: tuple[str, str], current: tuple[str, str]) -> bool:
    (p, p_type), (c, c_type) = previous, current
    if scheme == "IOB1":
        if c == "I":
            return p == "O" or p == "B" or p_type != c_type
        return c == "B" and p in ("B", "I") and p_type == c_type
    return c in ("B", "S") if scheme == "IOBES" else c == "B"


def _strict_continues(scheme: str, previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """Is `current` inside the entity that `previous` is part of?"""
    (p, p_type), (c, c_type) = previous, current
    inside = ("I", "E") if scheme == "IOBES" else ("I",)
    return p in ("B", "I") and c in inside and p_type == c_type


def _strict_closed(scheme: str, last: tuple[str, str], following: tuple[str, str]) -> bool:
    """Is an entity whose last word is `last` complete, given the word `following` it (not inside it)?"""
    if scheme == "IOBES":
        return last[0] in ("E", "S")
    if scheme == "IOB1" and last[0] == "B" and following[0] == "B":
        return last[1] == following[1]
    return True


def _strict_entities(tags: list[str], scheme: str) -> list[tuple[str, int, int]]:
    allowed = _PREFIXES[scheme]
    words = [split_tag(t) for t in tags] + [OUTSIDE]
    bad = next((t for t, (prefix, _) in zip(tags, words) if prefix not in allowed), None)
    if bad is not None:
        raise ValueError(f"tag {bad!r} is not a {scheme} tag (prefixes {', '.join(allowed)}): pass the scheme of "
                         "these tags (--tag-scheme)")
    spans, i, previous = [], 0, OUTSIDE
    while i < len(words):
        if _strict_start(scheme, previous, words[i]):
            end = i + 1
            while _strict_continues(scheme, words[end - 1], words[end]):
                end += 1
            if _strict_closed(scheme, words[end - 1], words[end]):
                spans.append((words[i][1], i, end))
            i = end
        else:
            i += 1
        previous = words[i - 1]
    return spans


def entities(tags: list[str], scheme: str | None = None, strict: bool = False) -> list[tuple[str, int, int]]:
    """The (type, start, end) entities of one sentence's tags (end exclusive), read by the conlleval rules,
    or with `strict` by `scheme`'s."""
    if not strict:
        return _lenient_entities(tags)
    if scheme not in SCHEMES:
        raise ValueError(f"strict entity scoring needs a scheme, one of {SCHEMES}; got {scheme!r}")
    return _strict_entities(tags, scheme)


def _prf(correct: int, predicted: int, gold: int) -> dict:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def entity_scores(gold: list[list[str]], predicted: list[list[str]], scheme: str | None = None,
                  strict: bool = False) -> dict:
    """Micro-averaged entity precision, recall and F1 over all sentences (0 where undefined), the counts,
    and per entity type the same with its gold count (`support`)."""
    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted tags must have the same sentences and lengths")
    gold_spans, predicted_spans = set(), set()
    for n, (g, p) in enumerate(zip(gold, predicted)):
        gold_spans |= {(n, *e) for e in entities(g, scheme, strict)}
        predicted_spans |= {(n, *e) for e in entities(p, scheme, strict)}
    correct = gold_spans & predicted_spans
    per_type = {}
    for kind in sorted({e[1] for e in gold_spans | predicted_spans}):
        counts = [sum(e[1] == kind for e in spans) for spans in (correct, predicted_spans, gold_spans)]
        per_type[kind] = {**_prf(*counts), "support": counts[2]}
    return {**_prf(len(correct), len(predicted_spans), len(gold_spans)), "gold_entities": len(gold_spans),
            "predicted_entities": len(predicted_spans), "correct_entities": len(correct), "per_type": per_type}


def token_accuracy(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """Share of the words whose predicted tag is the gold tag."""
    pairs = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)]
    return sum(g == p for g, p in pairs) / len(pairs)
