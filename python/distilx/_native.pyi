"""Stubs for `distilx._native`, the Rust data engine (PyO3, abi3).

Use it through `distilx.data` (`distilx.MaskedLMStream`, `distilx.encode`, `distilx.Tokenizer`,
`distilx.build_cache`). Every long call releases the GIL and honours Ctrl-C. Errors: a missing path
raises FileNotFoundError, an unreadable one PermissionError, other I/O failures OSError, and bad
options, bad data, a bad tokenizer or a corrupt cache ValueError — each message says what to fix.
"""

from os import PathLike
from typing import Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, PathLike[str]]
_Position = tuple[int, int, int, int, int, int, int]

class Tokenizer:
    """A tokenizer the engine encodes with, without special tokens.

    `path`: a Hugging Face tokenizer.json, a BERT vocab.txt, or a directory holding one (tokenizer.json
    preferred). The tokenizer.json's own truncation and padding are switched off (the engine frames
    sequences itself). `lowercase` applies to a vocab.txt only (None: `do_lower_case` from a
    tokenizer_config.json beside it, else True). `backend`: "auto" (the fast WordPiece when it
    reproduces the tokenizer, else the tokenizers crate), "wordpiece" (error if it cannot), or "hf".
    Ids are identical to the Python `tokenizers` library's for the same tokenizer and text.
    Raises ValueError for a file that does not parse or a vocabulary without [CLS], [SEP], [PAD],
    [MASK] or [UNK].
    """

    def __init__(self, path: _Path, *, lowercase: Optional[bool] = None, backend: str = "auto") -> None: ...
    @property
    def vocab_size(self) -> int:
        """Number of ids (largest id + 1, added tokens included)."""
    @property
    def cls_id(self) -> int: ...
    @property
    def sep_id(self) -> int: ...
    @property
    def pad_id(self) -> int: ...
    @property
    def mask_id(self) -> int: ...
    @property
    def unk_id(self) -> int: ...
    @property
    def special_ids(self) -> list[int]:
        """Ids never masked nor drawn as random replacements: the five above plus added special tokens."""
    @property
    def backend(self) -> str:
        """"wordpiece" (fast path) or "hf" (tokenizers crate): the path in use."""
    @property
    def path(self) -> str:
        """The tokenizer file loaded."""
    def encode(self, texts: Sequence[str], *, num_threads: Optional[int] = None) -> list[list[int]]:
        """Ids of each text (no special tokens), encoded in parallel on `num_threads` threads (None: one per core)."""
    def word_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """For each text, the word index (from 0) of every token: whole-word masking's grouping."""
    def token_to_id(self, token: str) -> Optional[int]:
        """The id of `token`, or None when it is not in the vocabulary."""

class Stream:
    """The engine behind `distilx.MaskedLMStream` (which documents every option and supplies the
    defaults). All keyword arguments are required here.

    - files: files, directories (recursive; .txt/.jsonl, optionally .gz/.zst) and globs, in order.
    - seq_len, batch_size: row length (with [CLS]/[SEP]) and rows per batch.
    - mlm_probability, mask_replace_prob, random_replace_prob: 15% targets, 80% [MASK], 10% random.
    - masking: "uniform" | "frequency" (exact count per batch, p ∝ count^-smoothing; needs
      token_counts) | "whole_word".
    - seed, rank, world_size: determinism and sharding (document i belongs to rank i % world_size;
      with world_size > 1 every rank yields the same number of batches, found by a counting pass).
    - packing, min_seq_len, max_unk_ratio: framing and filters.
    - padding ("fixed" | "dynamic"), pad_to_multiple_of, shuffle, drop_last, window_batches: batching.
    - num_threads, prefetch: the thread pool and the queue depth.
    - text_field, paragraphs, on_bad_json ("skip" | "raise"), max_document_bytes: reading.
    - cache: path of a cache from `build_cache` (files are then ignored).
    """

    def __init__(self, files: Sequence[str], tokenizer: Tokenizer, *, seq_len: int, batch_size: int,
                 mlm_probability: float, mask_replace_prob: float, random_replace_prob: float, masking: str,
                 seed: int, rank: int, world_size: int, packing: bool, min_seq_len: int, max_unk_ratio: float,
                 padding: str, pad_to_multiple_of: int, shuffle: bool, drop_last: bool, window_batches: int,
                 num_threads: Optional[int], prefetch: int, text_field: str, paragraphs: bool, on_bad_json: str,
                 max_document_bytes: int, token_counts: Optional[Sequence[int]], smoothing: float,
                 cache: Optional[_Path]) -> None: ...
    def next_batch(self) -> Optional[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        """(input_ids, attention_mask, labels), each int64 [B, L] (labels -100 off target), or None at
        the end of the epoch — the epoch counter then advances. Blocks (GIL released) until ready;
        restarts its producer when called in a forked child."""
    def position(self) -> _Position:
        """(epoch, file, byte_offset, doc_index, token_offset, batch_in_window, batches_done): the
        position after the last batch handed out."""
    def seek(self, position: _Position) -> None:
        """Continue from a `position()` of an identically configured stream."""
    def set_epoch(self, epoch: int) -> None:
        """Restart at the beginning of `epoch`."""
    @property
    def epoch(self) -> int: ...
    @property
    def batches_per_epoch(self) -> Optional[int]:
        """Batches per epoch when known (world_size > 1, after count_batches(), or after one full epoch)."""
    def count_batches(self) -> int:
        """Count an epoch's batches now (one tokenization pass, no masking)."""
    def files(self) -> list[str]:
        """The corpus files, in reading order."""
    def stats(self) -> dict[str, int]:
        """Cumulative counters: documents, lines, bytes, sequences, tokens, batches, padded_tokens,
        target_tokens, skipped_lines, empty_lines, oversized_lines, bad_json_lines, invalid_bytes,
        empty_documents, dropped_short, dropped_unk, files_opened."""

def count_tokens(files: Sequence[str], tokenizer: Tokenizer, *, num_threads: Optional[int] = None,
                 text_field: str = "text", paragraphs: bool = False, on_bad_json: str = "skip",
                 max_document_bytes: int = ...) -> npt.NDArray[np.uint64]:
    """Occurrences of every id over the corpus (one pass), shape [vocab_size]."""

def cache_token_counts(path: _Path, tokenizer: Tokenizer) -> npt.NDArray[np.uint64]:
    """Occurrences of every id in a cache (no tokenization)."""

def build_cache(files: Sequence[str], tokenizer: Tokenizer, path: _Path, *, num_threads: Optional[int] = None,
                text_field: str = "text", paragraphs: bool = False, on_bad_json: str = "skip",
                max_document_bytes: int = ..., word_starts: bool = True) -> dict[str, int]:
    """Tokenize a corpus into a memory-mapped cache (written to a temporary name, then renamed);
    returns documents, tokens, lines, bytes, skipped_lines, bad_json_lines, invalid_bytes, oversized_lines."""

def cache_info(path: _Path, tokenizer: Optional[Tokenizer] = None) -> dict[str, int]:
    """Validate a cache (length, magic, version, checksum, and the tokenizer when given) and return
    documents, tokens, id_bytes, word_starts. ValueError when it is truncated, corrupt or foreign."""

def stage_costs(files: Sequence[str], tokenizer: Tokenizer, *, seq_len: int = 128, batch_size: int = 32,
                packing: bool = False, num_threads: Optional[int] = None) -> dict[str, float]:
    """Benchmark helper (`bench/bench_data.py`): run read -> tokenize -> frame -> mask one stage at a
    time over a corpus held in memory; returns documents, bytes, tokens, rows, padded_tokens and, per
    stage, wall seconds (`read_s`, `tokenize_s`, `frame_s`, `mask_s`) and process CPU seconds
    (`read_cpu`, ...)."""
