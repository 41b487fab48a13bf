"""Extractive question-answering records: SQuAD-layout `.json` and `.jsonl` files, every record checked.

- `.json`: the SQuAD v1.1 / v2.0 layout, {"data": [{"paragraphs": [{"context", "qas": [{"id", "question",
  "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]} (v2.0's "plausible_answers" are ignored);
- `.jsonl`: one question per line, the Hugging Face `datasets` layout: {"id", "question", "context",
  "answers": {"text": [...], "answer_start": [...]}}.

Files are read through the bounded reader of every task (records.py: a byte-order mark, bytes that are
not UTF-8, an over-long record or file are handled there). A question with no answer (an empty answer
list; SQuAD v2.0) is a "no answer" question. Every record is
checked before anything is tokenized: a missing or mistyped field, an empty question or context, an
`answer_start` that does not point at its answer's text, an id seen twice. The error is one line naming
the file, the record (its line, or its place in the .json tree, and its id) and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .records import brief, json_document, records

__all__ = ["QARecord", "read_qa_records", "SUFFIXES"]

SUFFIXES = (".json", ".jsonl")
#: The bound of one SQuAD-layout .json file (read whole): the official v2.0 train file is 42 MB
MAX_JSON_BYTES = 256 << 20


@dataclass(frozen=True)
class QARecord:
    """One question on one context; `answers`: (text, answer_start) pairs, empty for "no answer"."""

    id: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]
    where: str  # "file:line" (.jsonl) or "file: data[i].paragraphs[j].qas[k]" (.json), for messages


def _text(record: dict, key: str, where: str) -> str:
    if key not in record:
        raise ValueError(f"{where}: no field {key!r} (fields here: {sorted(record)}); a question-answering record "
                         "has 'id', 'question', 'context' and 'answers' (docs/tasks.md)")
    value = record[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: field {key!r} holds {brief(value)}, not a non-empty text")
    return value


def _id(record: dict, where: str) -> str:
    if "id" not in record:
        raise ValueError(f"{where}: no field 'id' (fields here: {sorted(record)}): each question needs a unique id "
                         "(the predictions file is keyed by it)")
    value = record["id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise ValueError(f"{where}: 'id' holds {brief(value)}, not a non-empty string or integer")
    return str(value)


def _check_answer(context: str, text, start, where: str) -> tuple[str, int]:
    if not isinstance(text, str) or not text:
        raise ValueError(f"{where}: an answer text is {brief(text)}, not a non-empty string; a question without an answer "
                         "has an empty answer list (SQuAD v2.0)")
    if isinstance(start, bool) or not isinstance(start, int):
        raise ValueError(f"{where}: answer_start {brief(start)} of answer {brief(text)} is not an integer character offset")
    if start < 0 or context[start:start + len(text)] != text:
        found = [i for i in range(len(context)) if context.startswith(text, i)][:3]
        hint = (f"; the text occurs at character {', '.join(map(str, found))}" if found
                else "; the text does not occur in the context at all")
        raise ValueError(f"{where}: answer {brief(text)} is not at answer_start {start}: the context there reads "
                         f"{brief(context[max(start, 0):max(start, 0) + len(text)])}{hint}. Fix answer_start (a character "
                         "offset into the context, counted in Unicode characters from 0)")
    return text, start


def _jsonl_answers(record: dict, context: str, where: str) -> tuple[tuple[str, int], ...]:
    if "answers" not in record:
        raise ValueError(f"{where}: no field 'answers' (fields here: {sorted(record)}); write "
                         '"answers": {"text": [...], "answer_start": [...]}, both empty for a question with no answer')
    answers = record["answers"]
    texts, starts = (answers.get("text"), answers.get("answer_start")) if isinstance(answers, dict) else (None, None)
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
        raise ValueError(f"{where}: 'answers' holds {brief(answers)}; write {{\"text\": [...], \"answer_start\": [...]}}, "
                         "two lists of the same length (both empty for a question with no answer)")
    return tuple(_check_answer(context, t, s, where) for t, s in zip(texts, starts))


def _json_answers(qa: dict, context: str, where: str) -> tuple[tuple[str, int], ...]:
    answers = qa.get("answers", [])
    if not isinstance(answers, list) or any(not isinstance(a, dict) for a in answers):
        raise ValueError(f"{where}: 'answers' holds {brief(answers)}; write a list of {{\"text\", \"answer_start\"}} "
                         "objects (empty for a question with no answer)")
    for a in answers:
        missing = [k for k in ("text", "answer_start") if k not in a]
        if missing:
            raise ValueError(f"{where}: an answer has no field {missing[0]!r} (fields here: {sorted(a)})")
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise ValueError(f"{where}: is_impossible holds {brief(impossible)}, not true or false (SQuAD v2.0 writes a JSON "
                         "boolean)")
    if impossible and answers:
        raise ValueError(f"{where}: is_impossible is true but the question lists {len(answers)} answer(s): move "
                         "them to 'plausible_answers' (SQuAD v2.0) or set is_impossible to false")
    return tuple(_check_answer(context, a["text"], a["answer_start"], where) for a in answers)


def _jsonl_file(path: Path):
    for where, record in records(path):  # the bounded reader: BOM-aware, file:line in every error
        context = _text(record, "context", where)
        yield QARecord(_id(record, where), _text(record, "question", where), context,
                       _jsonl_answers(record, context, where), where)


def _nested(value, key: str, where: str) -> list:
    if not isinstance(value, dict) or not isinstance(value.get(key), list):
        raise ValueError(f"{where}: expected an object with a list {key!r} (the SQuAD layout: data -> paragraphs -> "
                         f"qas), found {type(value).__name__}{' with fields ' + str(sorted(value)) if isinstance(value, dict) else ''}")
    return value[key]


def _json_file(path: Path):
    tree = json_document(path, max_bytes=MAX_JSON_BYTES)
    for i, article in enumerate(_nested(tree, "data", f"{path}")):
        for j, paragraph in enumerate(_nested(article, "paragraphs", f"{path}: data[{i}]")):
            place = f"{path}: data[{i}].paragraphs[{j}]"
            context = _text(paragraph, "context", place) if isinstance(paragraph, dict) else None
            for k, qa in enumerate(_nested(paragraph, "qas", place)):
                where = f"{place}.qas[{k}]"
                if not isinstance(qa, dict):
                    raise ValueError(f"{where}: a JSON {type(qa).__name__}, not a question object")
                yield QARecord(_id(qa, where), _text(qa, "question", where), context,
                               _json_answers(qa, context, where), where)


def read_qa_records(files) -> list[QARecord]:
    """Every question of `files` (.json SQuAD layout / .jsonl), in file order, each checked; ids unique."""
    records, seen = [], {}
    for name in files:
        path = Path(os.fspath(name))
        if path.suffix not in SUFFIXES:
            raise ValueError(f"{path}: question-answering files are .json (the SQuAD layout) or .jsonl (one question "
                             "per line)")
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist or is not a file")
        for record in (_jsonl_file(path) if path.suffix == ".jsonl" else _json_file(path)):
            if record.id in seen:
                raise ValueError(f"{record.where}: id {record.id!r} was already used at {seen[record.id]}: question ids "
                                 "must be unique (answers and predictions are keyed by them)")
            seen[record.id] = record.where
            records.append(record)
    return records
