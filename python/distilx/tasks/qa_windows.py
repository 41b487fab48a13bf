"""Question-answering windows: records -> tokenized windows, training targets, and what decoding needs.

As the Hugging Face examples prepare SQuAD (run_qa.py's prepare_train_features /
prepare_validation_features):

- the teacher's own (fast) tokenizer frames the pair, the question first and the context second (the
  context first when the tokenizer pads on the left); the question's leading whitespace is dropped;
- only the context is truncated: a long context becomes several windows of at most `seq_len` tokens,
  consecutive windows sharing `doc_stride` context tokens (the tokenizer's overflow with stride);
- each context token keeps its character span in the context (the offset mapping), so a predicted token
  span maps back to the answer's characters;
- a window's target is the first and last token of the (first) answer when the answer lies wholly inside
  the window's context, else the position of the classifier token ([CLS], <s>): "no answer here", which
  is also every window of a question without an answer (SQuAD v2.0).

One difference from run_qa.py, on purpose: its start-token scan can run past the window's last context
token (the separator after it has the offset (0, 0)), so an answer whose first token is the window's
last context token gets a start position outside the context. Here both positions are always context
tokens (tests/test_question_answering.py compares the two on windows where that happens). A second one: an
answer whose first or last characters the tokenizer drops (a space, a control character, a combining accent
the normaliser strips) is first trimmed to the tokens it overlaps (`answer_spans`), where run_qa.py's scans
stretch the target to the neighbouring token; an answer overlapping no token is refused, and answered
questions that no window holds whole are counted in a warning (they train as "no answer").

Questions longer than `max_query_len` tokens are refused (naming the record) rather than silently
cut; the window geometry is checked first (`check_window_geometry`).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from .qa_records import QARecord
from .records import brief

__all__ = ["QAWindows", "answer_positions", "answer_spans", "check_window_geometry", "qa_tokenizer"]


def qa_tokenizer(source: str | os.PathLike):
    """The Hugging Face fast tokenizer of a model folder or tokenizer.json (offsets need a fast one)."""
    from .labelled_data import hf_tokenizer

    tokenizer = hf_tokenizer(source)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"tokenizer {source}: question answering maps answers to tokens through the offset mapping, "
                         "which only fast (Rust `tokenizers`) tokenizers give; add a tokenizer.json to the folder")
    if tokenizer.pad_token_id is None:
        raise ValueError(f"tokenizer {source} has no padding token; question-answering batches need one")
    return tokenizer


def check_window_geometry(tokenizer, seq_len: int, doc_stride: int, max_query_len: int) -> int:
    """Raise unless windows of seq_len tokens hold a max_query_len-token question, the special tokens and
    more than doc_stride context tokens; returns the context tokens left beside the longest question."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    room = seq_len - specials - max_query_len
    if doc_stride < 0 or room <= doc_stride:
        raise ValueError(f"windows of seq_len={seq_len} tokens leave {room} context tokens beside a question of "
                         f"max_query_len={max_query_len} tokens and {specials} special tokens, which must be more than "
                         f"doc_stride={doc_stride} (the tokens consecutive windows share): raise --seq-len, or lower "
                         "--doc-stride or --max-query-len (the Hugging Face examples use 384 / 128 / 64)")
    return room


def answer_positions(offsets: np.ndarray, cls_index: int, span: tuple[int, int] | None) -> tuple[int, int]:
    """(start, end) token positions of the character span `span` (end exclusive; token-aligned, see
    `answer_spans`) in one window whose `offsets` are [-1, -1] outside the context, or (cls_index, cls_index)
    when there is no answer or it is not wholly inside the window's context tokens."""
    context = np.flatnonzero(offsets[:, 0] >= 0)
    if span is None or not len(context):
        return cls_index, cls_index
    start_char, end_char = span
    if not (offsets[context[0], 0] <= start_char and offsets[context[-1], 1] >= end_char):
        return cls_index, cls_index
    start = context[offsets[context, 0] <= start_char].max()
    end = context[offsets[context, 1] >= end_char].min()
    return int(start), int(end)


def answer_spans(records: list[QARecord], offsets: list[np.ndarray], record_of: list[int]) -> list[tuple[int, int] | None]:
    """Per record, the character span of the context tokens its (first) answer overlaps, from the first of
    their starts to the last of their ends (None without an answer). The answer's own span may begin or end
    on characters the tokenizer drops (a space, a control character, a combining accent that the
    normaliser strips): mapping those edges to the nearest token outside the answer would make the target
    one token too long; a span of tokens is what a model can point at. An answer that overlaps no token at
    all (it holds only such characters) is a ValueError naming the record."""
    spans: list[tuple[int, int] | None] = [None] * len(records)
    for w, window in enumerate(offsets):
        record = records[record_of[w]]
        if not record.answers:
            continue
        text, start = record.answers[0]
        inside = (window[:, 0] >= 0) & (window[:, 0] < start + len(text)) & (window[:, 1] > start)
        if inside.any():
            first, last = int(window[inside, 0].min()), int(window[inside, 1].max())
            known = spans[record_of[w]]
            spans[record_of[w]] = (first, last) if known is None else (min(known[0], first), max(known[1], last))
    for record, span in zip(records, spans):
        if record.answers and span is None:
            text, start = record.answers[0]
            raise ValueError(f"{record.where} (id {record.id!r}): answer {brief(text)} at answer_start {start} covers no "
                             "token of the context (only characters the tokenizer drops: spaces, control or zero-width "
                             "characters), so it can be neither learned nor predicted: fix the answer")
    return spans


class QAWindows:
    """The windows of `records`: int32 token ids (and segment ids when the tokenizer gives them), per window
    its record, classifier-token position, training target, and each token's character span in the
    context ([-1, -1] for question and special tokens)."""

    unit = "question windows"  # what ClassificationBatches counts, for its messages

    def __init__(self, records: list[QARecord], tokenizer_source, *, seq_len: int, doc_stride: int,
                 max_query_len: int, files=()):
        tokenizer = qa_tokenizer(tokenizer_source)
        check_window_geometry(tokenizer, seq_len, doc_stride, max_query_len)
        self.records, self.files, self.seq_len = records, [os.fspath(f) for f in files], seq_len
        self.pad_id = tokenizer.pad_token_id
        self.question_first = tokenizer.padding_side == "right"
        questions = [r.question.lstrip() for r in records]  # as run_qa.py: some questions start with spaces
        self._check_questions(tokenizer, questions, max_query_len)
        self.input_ids: list[np.ndarray] = []
        self.token_type_ids: list[np.ndarray] | None = None
        self.offsets: list[np.ndarray] = []
        self.record_of, self.cls_index, self.starts, self.ends = [], [], [], []
        if records:
            self._tokenize(tokenizer, questions, seq_len, doc_stride)

    def _check_questions(self, tokenizer, questions: list[str], max_query_len: int) -> None:
        if not questions:
            return
        for record, ids in zip(self.records, tokenizer(questions, add_special_tokens=False)["input_ids"]):
            if len(ids) > max_query_len:
                raise ValueError(f"{record.where} (id {record.id!r}): the question is {len(ids)} tokens long, more than "
                                 f"max_query_len={max_query_len}: raise --max-query-len (windows then hold fewer "
                                 "context tokens) or shorten the question")

    def _tokenize(self, tokenizer, questions, seq_len, doc_stride) -> None:
        contexts = [r.context for r in self.records]
        pair = (questions, contexts) if self.question_first else (contexts, questions)
        context_id = 1 if self.question_first else 0
        encoded = tokenizer(*pair, truncation="only_second" if self.question_first else "only_first",
                            max_length=seq_len, stride=doc_stride, return_overflowing_tokens=True,
                            return_offsets_mapping=True, padding=False)
        has_types = "token_type_ids" in encoded
        self.token_type_ids = [] if has_types else None
        for i, ids in enumerate(encoded["input_ids"]):
            sequence_ids = encoded.sequence_ids(i)
            self.input_ids.append(np.asarray(ids, dtype=np.int32))
            if has_types:
                self.token_type_ids.append(np.asarray(encoded["token_type_ids"][i], dtype=np.int8))
            self.offsets.append(np.asarray([o if s == context_id else (-1, -1)
                                            for o, s in zip(encoded["offset_mapping"][i], sequence_ids)],
                                           dtype=np.int32).reshape(-1, 2))
            self.record_of.append(encoded["overflow_to_sample_mapping"][i])
            self.cls_index.append(ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0)
        spans = answer_spans(self.records, self.offsets, self.record_of)
        for w, offsets in enumerate(self.offsets):
            start, end = answer_positions(offsets, self.cls_index[w], spans[self.record_of[w]])
            self.starts.append(start)
            self.ends.append(end)
        self._warn_unplaced()

    def _warn_unplaced(self) -> None:
        """Warn about answered questions whose answer no window holds whole: they train as "no answer"."""
        placed = {self.record_of[w] for w in range(len(self)) if self.starts[w] != self.cls_index[w]}
        unplaced = [r for i, r in enumerate(self.records) if r.answers and i not in placed]
        if unplaced:
            first = unplaced[0]
            warnings.warn(f"{len(unplaced)} of {sum(bool(r.answers) for r in self.records)} answered questions have an "
                          f"answer that no window of seq_len={self.seq_len} tokens holds whole (the first: "
                          f"{first.where}, id {first.id!r}, an answer of {len(first.answers[0][0])} characters): they "
                          "train as \"no answer\" and cannot be predicted exactly; raise --doc-stride (windows overlap "
                          "more) or --seq-len", stacklevel=3)

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, indices, pad_to: int | None = None) -> dict[str, torch.Tensor]:
        """The windows at `indices` as int64 tensors, padded on the right to the longest (or to `pad_to`),
        with their targets as `start_positions` / `end_positions`."""
        indices = list(indices)
        width = pad_to or max(len(self.input_ids[i]) for i in indices)
        ids = torch.full((len(indices), width), self.pad_id, dtype=torch.int64)
        mask = torch.zeros((len(indices), width), dtype=torch.int64)
        types = torch.zeros((len(indices), width), dtype=torch.int64) if self.token_type_ids is not None else None
        for row, i in enumerate(indices):
            n = len(self.input_ids[i])
            ids[row, :n] = torch.from_numpy(self.input_ids[i].astype(np.int64))
            mask[row, :n] = 1
            if types is not None:
                types[row, :n] = torch.from_numpy(self.token_type_ids[i].astype(np.int64))
        out = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            out["token_type_ids"] = types
        out["start_positions"] = torch.tensor([self.starts[i] for i in indices], dtype=torch.int64)
        out["end_positions"] = torch.tensor([self.ends[i] for i in indices], dtype=torch.int64)
        return out

    def in_order(self, batch_size: int):
        """Every window in order, `batch_size` at a time (the last batch may be smaller)."""
        for start in range(0, len(self), batch_size):
            yield self.batch(range(start, min(len(self), start + batch_size)))
