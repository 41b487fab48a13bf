"""Tagged sentences for token classification: files, tags, word/sub-token alignment, batches.

- Files (read by records.py: UTF-8 with or without a BOM, bounded lines, file:line in every error):
  `.jsonl` (one JSON object per line, blank lines skipped) with a list of words and a list of tags of
  the same length (field names configurable: `tokens_field`, `tags_field`); or CoNLL-style text
  (`.conll`, `.txt`, `.tsv`, `.iob`, `.iob2`, `.bio`, `.bioes`): one word per line, its tag in the LAST
  column (columns split on tabs when the line has one, else on whitespace; the word is the first
  column), blank lines between sentences, `-DOCSTART-` lines skipped (they also end a sentence).
- Tags: the teacher's label set (config.json `id2label`): a tag is a name or an integer id; anything else
  is an error naming the file and the line (CoNLL: the word's own line) and the known tags.
- Tokens: the teacher's Hugging Face tokenizer splits each word into sub-tokens (`is_split_into_words`)
  and frames the sentence ([CLS] … [SEP], <s> … </s>). A sentence is never truncated: one longer than
  seq_len is an error naming the file, the line and the fix, before any step (a truncated sentence
  would lose its tail's tags from training and from the scores).
- Labels (`align_labels`, the Hugging Face token-classification example's rule): a word's tag goes to its
  first sub-token; the others and the special tokens get -100 (ignored), or, with
  `label_all_subtokens`, the word's tag too (a B- tag becoming its I- tag on the later pieces).
  A word that gives no sub-token at all (only characters the tokenizer drops) is an error: its tag could
  be neither learned nor predicted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..losses import IGNORE_INDEX
from .labelled_data import LabelledExamples, LabelSet, hf_tokenizer
from .records import brief, lines, records

__all__ = ["Sentence", "read_sentences", "align_labels", "b_to_i", "TaggedExamples", "word_tokenizer",
           "tag_order", "SUFFIXES", "CONLL_SUFFIXES", "DOCSTART"]

CONLL_SUFFIXES = (".conll", ".txt", ".tsv", ".iob", ".iob2", ".bio", ".bioes")
SUFFIXES = (".jsonl",) + CONLL_SUFFIXES
DOCSTART = "-DOCSTART-"


@dataclass(frozen=True)
class Sentence:
    """One tagged sentence: its words, their tags as written, and where it starts (file, line). In a
    CoNLL file word i is on line `line + i`; in a .jsonl file every word is on `line`."""

    words: tuple[str, ...]
    tags: tuple
    file: str
    line: int
    one_word_per_line: bool

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def where_word(self, i: int) -> str:
        return f"{self.file}:{self.line + i if self.one_word_per_line else self.line}"


def _jsonl_sentences(path: Path, tokens_field: str, tags_field: str):
    for where, record in records(path):
        line_no = int(where.rsplit(":", 1)[1])
        missing = [k for k in (tokens_field, tags_field) if k not in record]
        if missing:
            raise ValueError(f"{where}: no field {missing[0]!r} (fields here: {sorted(record)}); name the words' "
                             "field with --tokens-field and the tags' field with --tags-field")
        words, tags = record[tokens_field], record[tags_field]
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError(f"{where}: field {tokens_field!r} must be a list of words (strings), not {brief(words)}")
        if not isinstance(tags, list) or not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in tags):
            raise ValueError(f"{where}: field {tags_field!r} must be a list of tags (names or integer ids), "
                             f"not {brief(tags)}")
        if len(words) != len(tags):
            raise ValueError(f"{where}: {len(words)} words but {len(tags)} tags: give one tag per word")
        if not words:
            raise ValueError(f"{where}: a sentence without words: remove the line")
        yield Sentence(tuple(words), tuple(tags), str(path), line_no, False)


def _conll_sentences(path: Path):
    words, tags, first = [], [], 0
    for where, line in lines(path):
        line_no = int(where.rsplit(":", 1)[1])
        columns = line.split("\t") if "\t" in line else line.split()
        columns = [c.strip() for c in columns]
        if not line.strip() or columns[0] == DOCSTART:
            if words:
                yield Sentence(tuple(words), tuple(tags), str(path), first, True)
            words, tags = [], []
            continue
        if len(columns) < 2 or not columns[0] or not columns[-1]:
            raise ValueError(f"{where}: {brief(line)} is not `word ... tag`: a CoNLL line holds the word first "
                             "and its tag last (whitespace- or tab-separated), sentences are separated by blank lines")
        if not words:
            first = line_no
        words.append(columns[0])
        tags.append(columns[-1])
    if words:
        yield Sentence(tuple(words), tuple(tags), str(path), first, True)


def read_sentences(files, tokens_field: str = "tokens", tags_field: str = "tags") -> list[Sentence]:
    """Every sentence of `files`, in file order; ValueError naming the file and line of anything malformed."""
    sentences = []
    for name in files:
        path = Path(name)
        if path.suffix not in SUFFIXES:
            raise ValueError(f"{path}: tagged files must be .jsonl (words and tags per line) or CoNLL-style text "
                             f"({', '.join(CONLL_SUFFIXES)}: one `word ... tag` per line)")
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist or is not a file")
        reader = _jsonl_sentences(path, tokens_field, tags_field) if path.suffix == ".jsonl" else _conll_sentences(path)
        sentences.extend(reader)
    return sentences


def tag_order(tag) -> tuple:
    """The order of a tag set found in files (`distilx finetune`'s id2label): "O" first, then by entity type
    (the part after "B-", "I-", "E-", "S-"; a tag without such a prefix is its own type, e.g. a POS tag),
    within a type B, I, E, S, then the tag itself; integer ids in their numeric order."""
    if isinstance(tag, int):
        return (0, tag)
    prefix, dash, kind = tag.partition("-")
    if dash and prefix in ("B", "I", "E", "S") and kind:
        return (1, tag != "O", kind, "BIES".index(prefix), tag)
    return (1, tag != "O", tag, -1, tag)


def b_to_i(labels: LabelSet) -> list[int]:
    """For each tag id, the id later sub-tokens of a word get with label_all_subtokens: a B-X tag's I-X
    (when the label set has one), every other tag itself (the Hugging Face example's b_to_i_label)."""
    out = []
    for i, name in enumerate(labels.names):
        inside = "I-" + name[2:]
        out.append(labels.names.index(inside) if name.startswith("B-") and inside in labels.names else i)
    return out


def align_labels(word_ids: list[int | None], word_tags: list[int], all_subtokens: bool = False,
                 inside_of: list[int] | None = None) -> list[int]:
    """The per-sub-token labels of one sentence: word_ids[j] is the word of sub-token j (None for special
    tokens); word_tags[w] the tag id of word w. The first sub-token of a word gets its tag; a later one
    -100, or with `all_subtokens` inside_of[tag] (b_to_i); special tokens -100."""
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE_INDEX)
        elif word != previous:
            labels.append(word_tags[word])
        else:
            labels.append(inside_of[word_tags[word]] if all_subtokens else IGNORE_INDEX)
        previous = word
    return labels


def word_tokenizer(source):
    """The Hugging Face tokenizer of `source` able to take pre-split words: byte-level BPE tokenizers
    (RoBERTa's) need add_prefix_space=True for that, as the Hugging Face example loads them."""
    tokenizer = hf_tokenizer(source)
    if getattr(tokenizer, "add_prefix_space", None) is False and Path(source).is_dir():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(source), add_prefix_space=True)
    return tokenizer


class TaggedExamples(LabelledExamples):
    """Tokenized tagged sentences: token ids (and segment ids when the tokenizer gives them), per-sub-token
    labels (align_labels), the word of each sub-token (`word_ids`), each word's gold tag id (`tags`)."""

    def __init__(self, files, tokenizer_source, *, tokens_field: str, tags_field: str, labels: LabelSet,
                 seq_len: int, label_all_subtokens: bool = False):
        from ..data import _as_tokenizer

        self.files = [os.fspath(f) for f in files]
        self.label_set = labels
        self.seq_len = seq_len
        self.sentences = read_sentences(self.files, tokens_field, tags_field)
        self.tags = [[labels.id_of(tag, s.where_word(i), noun="tag") for i, tag in enumerate(s.tags)]
                     for s in self.sentences]
        self.pad_id = _as_tokenizer(tokenizer_source).pad_id  # the engine's, as for masked-LM batches
        self.features: dict[str, list[list[int]]] = {}
        self.word_ids: list[list[int | None]] = []
        self.labels: list[list[int]] = []
        if not self.sentences:
            return
        encoded = word_tokenizer(tokenizer_source)([list(s.words) for s in self.sentences], is_split_into_words=True,
                                                   truncation=False, padding=False, return_attention_mask=False)
        self.features = {k: encoded[k] for k in ("input_ids", "token_type_ids") if k in encoded}
        inside_of = b_to_i(labels)
        for i, sentence in enumerate(self.sentences):
            word_ids = encoded.word_ids(i)
            self._check(sentence, word_ids)
            self.word_ids.append(word_ids)
            self.labels.append(align_labels(word_ids, self.tags[i], label_all_subtokens, inside_of))

    def _check(self, sentence: Sentence, word_ids: list[int | None]) -> None:
        if len(word_ids) > self.seq_len:
            raise ValueError(f"{sentence.where}: a sentence of {len(sentence.words)} words is {len(word_ids)} tokens "
                             f"with the framing, more than seq_len={self.seq_len}; sentences are never truncated "
                             f"(their tail's tags would be lost): raise --seq-len to {len(word_ids)} or more (within "
                             "what the models embed), or split the sentence")
        seen = set(word_ids)
        missing = next((w for w in range(len(sentence.words)) if w not in seen), None)
        if missing is not None:
            raise ValueError(f"{sentence.where_word(missing)}: word {missing + 1} of the sentence "
                             f"({sentence.words[missing]!r}) gives the tokenizer no token (only characters it "
                             "drops), so its tag can be neither learned nor predicted: remove or replace the word")

    def label_tensor(self, indices, width: int) -> torch.Tensor:
        rows = [self.labels[i] for i in indices]
        return torch.tensor([row + [IGNORE_INDEX] * (width - len(row)) for row in rows], dtype=torch.int64)

    def first_subtokens(self, index: int) -> list[int]:
        """The position of each word's first sub-token in sentence `index` (where its tag is read)."""
        first, previous = [], None
        for position, word in enumerate(self.word_ids[index]):
            if word is not None and word != previous:
                first.append(position)
            previous = word
        return first
