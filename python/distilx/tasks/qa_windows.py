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
tokens (tests/test_question_answering.py compares the two on windows where that happens).

Questions longer than `max_query_len` tokens are refused (naming the record) rather than silently
cut; the window geometry is checked first (`check_window_geometry`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .qa_records import QARecord

__all__ = ["QAWindows", "answer_positions", "check_window_geometry", "qa_tokenizer"]


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


def answer_positions(offsets, sequence_ids, context_id: int, cls_index: int, answer: tuple[str, int] | None
                     ) -> tuple[int, int]:
    """(start, end) token positions of `answer` (text, answer_start) in one window, or (cls_index, cls_index)
    when there is no answer or it is not wholly inside the window's context tokens."""
    context = [i for i, s in enumerate(sequence_ids) if s == context_id]
    if answer is None or not context:
        return cls_index, cls_index
    start_char = answer[1]
    end_char = start_char + len(answer[0])
    if not (offsets[context[0]][0] <= start_char and offsets[context[-1]][1] >= end_char):
        return cls_index, cls_index
    start = max(i for i in context if offsets[i][0] <= start_char)
    end = min(i for i in context if offsets[i][1] >= end_char)
    return start, end


class QAWindows:
    """The windows of `records`: int32 token ids (and segment ids when the tokenizer gives them), per window
    its record, classifier-token position, training target, and each token's character span in the
    context ([-1, -1] for question and special tokens)."""

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
            record = self.records[encoded["overflow_to_sample_mapping"][i]]
            sequence_ids = encoded.sequence_ids(i)
            offsets = encoded["offset_mapping"][i]
            cls_index = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
            start, end = answer_positions(offsets, sequence_ids, context_id, cls_index,
                                          record.answers[0] if record.answers else None)
            self.input_ids.append(np.asarray(ids, dtype=np.int32))
            if has_types:
                self.token_type_ids.append(np.asarray(encoded["token_type_ids"][i], dtype=np.int8))
            self.offsets.append(np.asarray([o if s == context_id else (-1, -1) for o, s in zip(offsets, sequence_ids)],
                                           dtype=np.int32).reshape(-1, 2))
            self.record_of.append(encoded["overflow_to_sample_mapping"][i])
            self.cls_index.append(cls_index)
            self.starts.append(start)
            self.ends.append(end)

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
