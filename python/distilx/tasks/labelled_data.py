"""Labelled examples for sequence classification: files, labels, tokens, and resumable batches.

- Files: `.jsonl` (one JSON object per line; blank lines skipped) and `.csv` (a header row names the
  columns), read by records.py (UTF-8 with or without a BOM, bounded records, file:line in every error).
  The text is one field or two (a text pair), the label one field; names are configurable.
- Labels: the teacher's label set (config.json `id2label`) and problem type. Single-label: a label is a
  label name, or an integer id in [0, num_labels) (a JSON integer or, in CSV, a string of ASCII digits);
  names win when a name is itself a number. Multi-label: a JSON list of such labels (in CSV, the labels
  joined by "|"), possibly empty. Regression: a finite number (in CSV, its text). Anything else is an
  error naming the file, the line and what is expected.
- Tokens: the teacher's own Hugging Face tokenizer frames the text or the pair (its template decides
  [CLS] a [SEP] b [SEP], <s> a </s></s> b </s>, the segment ids) and truncates to seq_len
  ("longest_first" for pairs): the exact framing, by construction.
- Batches (`ClassificationBatches`): a seeded shuffle per epoch, full batches only, split across ranks
  so every rank yields the same number per epoch; the position (epoch, batch index) is the resume state.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..losses.heads import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from .records import RECORD_SUFFIXES, brief, records

__all__ = ["LabelSet", "LabelledExamples", "ClassificationBatches", "read_examples", "hf_tokenizer",
           "SUFFIXES"]

SUFFIXES = RECORD_SUFFIXES


MULTI_LABEL_CSV_SEPARATOR = "|"


@dataclass(frozen=True)
class LabelSet:
    """The teacher's labels in id order (config.json id2label) and what a label is (its problem type;
    token classifiers are single-label per word)."""

    names: tuple[str, ...]
    problem: str = SINGLE_LABEL

    @classmethod
    def of(cls, model_config, role: str = "teacher") -> "LabelSet":
        """The labels of a classifier's config; ValueError naming its config.json when `id2label` does not
        number them 0..n-1 (a gap, a key that is no number) or names one label twice."""
        folder = getattr(model_config, "_name_or_path", "")
        where = f"the {role}'s config.json" + (f" ({folder})" if folder else "")
        try:
            id2label = {int(k): str(v) for k, v in model_config.id2label.items()}
        except (TypeError, ValueError):
            raise ValueError(f"{where}: id2label keys {list(model_config.id2label)[:10]} are not all integer ids: "
                             "number the labels 0..n-1") from None
        missing = [i for i in range(len(id2label)) if i not in id2label]
        if missing:
            raise ValueError(f"{where}: id2label numbers its {len(id2label)} labels {sorted(id2label)[:10]}, without "
                             f"id {missing[0]}: number them 0..{len(id2label) - 1} without gaps (the classifier has "
                             "one output per id)")
        names = tuple(id2label[i] for i in range(len(id2label)))
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise ValueError(f"{where}: id2label names the label {twice!r} twice: give each id its own name")
        problem = model_config.problem_type or (REGRESSION if len(names) == 1 else SINGLE_LABEL)
        if problem not in (SINGLE_LABEL, MULTI_LABEL, REGRESSION):
            problem = SINGLE_LABEL  # a token classifier's problem_type names nothing distilx reads
        return cls(names, problem)

    @classmethod
    def shared(cls, teacher, student) -> "LabelSet":
        """The teacher's labels, checked to be the student's too (a classifier student of another label set
        cannot be trained or evaluated against this teacher)."""
        labels, student_labels = cls.of(teacher.config), cls.of(student.config, "student")
        if student_labels != labels:
            raise ValueError(f"the student's labels {list(student_labels.names)} are not the teacher's "
                             f"{list(labels.names)}: use a student of this teacher")
        return labels

    def id_of(self, value, where: str, noun: str = "label") -> int:
        """The id of a label as written in a file (a name, or an integer id); `where`: file:line."""
        if isinstance(value, str):
            if value in self.names:
                return self.names.index(value)
            # an id written as text: ASCII digits only ("²" and "٣" are digits to str.isdigit), and few
            # enough of them for int() (Python refuses over 4300)
            if value.isascii() and value.isdigit() and len(value) <= 18:
                value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(self.names):
            return value
        raise ValueError(f"{where}: {noun} {brief(value)} is not one the teacher knows: its {noun}s (config.json "
                         f"id2label) are {list(self.names)}, or their ids 0..{len(self.names) - 1}; fix the {noun}, or "
                         f"use a teacher fine-tuned on this {noun} set")

    def value_of(self, value, where: str, csv: bool = False):
        """A label as written in a file, read for this problem: a class id (single-label), a 0/1 row over the
        labels (multi-label: a list of labels; in CSV joined by "|"), or a float (regression)."""
        if self.problem == REGRESSION:
            number = value
            if csv and isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    number = None
            if isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number):
                return float(number)
            raise ValueError(f"{where}: label {brief(value)} is not a finite number: the teacher is a regression head "
                             "(problem_type='regression'), whose label is the gold value")
        if self.problem == MULTI_LABEL:
            if csv and isinstance(value, str):
                value = [v for v in value.split(MULTI_LABEL_CSV_SEPARATOR) if v]
            if not isinstance(value, list):
                raise ValueError(f"{where}: label {brief(value)} is not a list: the teacher is a multi-label classifier "
                                 "(problem_type='multi_label_classification'), whose label is the list of the "
                                 f"example's labels (names or ids, possibly []; in CSV joined by "
                                 f"{MULTI_LABEL_CSV_SEPARATOR!r})")
            row = [0.0] * len(self.names)
            for item in value:
                row[self.id_of(item, where)] = 1.0
            return row
        return self.id_of(value, where)

    def tensor(self, values: list) -> torch.Tensor:
        """value_of's results as the batch's labels: int64 [B] class ids, float [B, C] 0/1 rows, float [B]."""
        return torch.tensor(values, dtype=torch.int64 if self.problem == SINGLE_LABEL else torch.float32)


def read_examples(files, text_fields: list[str], label_field: str, labels: LabelSet,
                  ) -> tuple[list[tuple[str, ...]], list]:
    """(texts, labels read by labels.value_of) of every example in `files`, in file order; ValueError
    naming the file and line of anything malformed (a missing field, a non-text text, a bad label)."""
    if not 1 <= len(text_fields) <= 2:
        raise ValueError(f"text_fields={list(text_fields)}: give one field (a single text) or two (a text pair)")
    texts, ids = [], []
    for name in files:
        for where, record in records(name):
            missing = [k for k in (*text_fields, label_field) if k not in record]
            if missing:
                raise ValueError(f"{where}: no field {missing[0]!r} (fields here: {sorted(record)}); name the text "
                                 "field(s) with --text-fields and the label field with --label-field")
            example = tuple(record[k] for k in text_fields)
            bad = next((k for k, v in zip(text_fields, example) if not isinstance(v, str)), None)
            if bad is not None:
                raise ValueError(f"{where}: field {bad!r} holds {brief(record[bad])}, not a text")
            texts.append(example)
            ids.append(labels.value_of(record[label_field], where, csv=Path(name).suffix == ".csv"))
    return texts, ids


def hf_tokenizer(source: str | os.PathLike):
    """The Hugging Face tokenizer of a model folder (AutoTokenizer) or of a tokenizer.json file."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    source = Path(source)
    if source.is_dir():
        return AutoTokenizer.from_pretrained(str(source))
    if source.suffix == ".json":
        return PreTrainedTokenizerFast(tokenizer_file=str(source))
    raise ValueError(f"tokenizer {source}: sequence classification frames text pairs with the tokenizer's own "
                     "template; pass the tokenizer's folder or its tokenizer.json")


class LabelledExamples:
    """Tokenized labelled examples: token ids (and segment ids when the tokenizer gives them), label ids."""

    def __init__(self, files, tokenizer_source, *, text_fields: list[str], label_field: str, labels: LabelSet,
                 seq_len: int):
        from ..data import _as_tokenizer

        self.files = [os.fspath(f) for f in files]
        self.label_set = labels
        texts, self.labels = read_examples(self.files, text_fields, label_field, labels)
        self.seq_len = seq_len
        self.pad_id = _as_tokenizer(tokenizer_source).pad_id  # the engine's, as for masked-LM batches
        self.features: dict[str, list[list[int]]] = {}
        if texts:
            tokenizer = hf_tokenizer(tokenizer_source)
            columns = [list(column) for column in zip(*texts)]
            encoded = tokenizer(*columns, truncation=True, max_length=seq_len, padding=False,
                                return_attention_mask=False)
            self.features = {k: encoded[k] for k in ("input_ids", "token_type_ids") if k in encoded}

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices, pad_to: int | None = None) -> dict[str, torch.Tensor]:
        """The examples at `indices` as int64 tensors, padded to the longest one (or to `pad_to`)."""
        rows = {k: [v[i] for i in indices] for k, v in self.features.items()}
        lengths = [len(ids) for ids in rows["input_ids"]]
        width = pad_to or max(lengths)
        out = {"attention_mask": torch.tensor([[1] * n + [0] * (width - n) for n in lengths], dtype=torch.int64)}
        for key, values in rows.items():
            pad = self.pad_id if key == "input_ids" else 0
            out[key] = torch.tensor([v + [pad] * (width - len(v)) for v in values], dtype=torch.int64)
        out["labels"] = self.label_tensor(indices, width)
        return out

    def label_tensor(self, indices, width: int) -> torch.Tensor:
        """The labels of the examples at `indices` (LabelSet.tensor); `width`: the batch's padded length."""
        return self.label_set.tensor([self.labels[i] for i in indices])

    def in_order(self, batch_size: int, max_batches: int | None = None):
        """The examples in file order, `batch_size` at a time (the last batch may be smaller)."""
        n = self.count(batch_size, max_batches)
        for start in range(0, n, batch_size):
            yield self.batch(range(start, min(n, start + batch_size)))

    def count(self, batch_size: int, max_batches: int | None = None) -> int:
        """How many examples in_order(batch_size, max_batches) yields."""
        return len(self) if max_batches is None else min(len(self), max_batches * batch_size)


class ClassificationBatches:
    """Resumable training batches of labelled examples for one rank.

    Epoch e visits the examples in the order of a permutation drawn from (seed, e); it is cut into
    global batches of batch_size x world_size examples (the incomplete last one is dropped: a different
    remainder each epoch) and rank r takes the r-th slice of each, so all ranks yield `batches_per_epoch`
    batches. Iterating yields the rest of the current epoch, then the epoch counter advances, like the
    masked-LM stream. `state_dict()` is the position (epoch, batches yielded in it); `for_shard` and
    `position_of` let a resume on another number of processes deal out the rest of an epoch
    (distilx.resharding); `last_origin` is the indices of the examples in the last batch.
    """

    def __init__(self, examples: LabelledExamples, *, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, padding: str = "dynamic"):
        self.examples = examples
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.padding = padding
        self.pad_to = examples.seq_len if padding == "fixed" else None
        self.batches_per_epoch = len(examples) // (batch_size * world_size)
        if self.batches_per_epoch == 0:  # refused here, not at the first step as "an empty corpus"
            unit = getattr(examples, "unit", "examples")
            raise ValueError(f"train_files {list(examples.files)} give {len(examples)} {unit}, fewer than one batch of "
                             f"batch_size={batch_size}{f' x {world_size} processes' if world_size > 1 else ''}: add "
                             "examples or lower --batch-size")
        self.epoch, self.index = 0, 0
        self.last_origin: list[int] | None = None

    @property
    def files(self) -> list[str]:
        return self.examples.files

    def _config(self) -> dict:
        return {"examples": len(self.examples), "batch_size": self.batch_size, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size}

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.examples))
        while self.index < self.batches_per_epoch:
            start = (self.index * self.world_size + self.rank) * self.batch_size
            self.index += 1  # before the yield: a state taken while this batch is in use is past it
            self.last_origin = order[start:start + self.batch_size].tolist()
            yield self.examples.batch(self.last_origin, self.pad_to)
        self.epoch, self.index = self.epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.index = epoch, 0

    def for_shard(self, rank: int, world_size: int) -> "ClassificationBatches":
        """The same examples as rank `rank` of `world_size`, at the start of epoch 0."""
        return type(self)(self.examples, batch_size=self.batch_size, seed=self.seed, rank=rank, world_size=world_size,
                          padding=self.padding)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "config": self._config()}

    @staticmethod
    def position_of(state: dict) -> tuple[int, int]:
        """(epoch, batches yielded in it) of a state_dict()."""
        return state["epoch"], state["index"]

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != self._config():
            raise ValueError(f"this batch position was saved for {state['config']}, but these batches are "
                             f"{self._config()}: resume with the same data, batch size, seed and processes")
        self.epoch, self.index = state["epoch"], state["index"]
