"""Stubs for `distilx._native`, the Rust data engine (PyO3, abi3).

Use it through `distilx.data` (`distilx.MaskedLMStream`, `distilx.encode`, `distilx.Tokenizer`,
`distilx.build_cache`). Every long call releases the GIL; a stream's waits and the corpus passes
(construction, `count_batches`, `count_tokens`, `build_cache`, `cache_info`) stop on Ctrl-C with
KeyboardInterrupt. Errors: a missing path raises FileNotFoundError, an unreadable one
PermissionError, other I/O failures OSError, and bad options, bad data, a bad tokenizer or a corrupt
cache ValueError — each message says what to fix (docs/data.md, "Limits and failure behaviour").
"""

from os import PathLike
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, PathLike[str]]
_Input = Union[str, "TextFeed"]
_Position = tuple[int, int, int, int, int, int, int]

class Tokenizer:
    """A tokenizer the engine encodes with, without special tokens.

    `path`: a Hugging Face tokenizer.json, a BERT vocab.txt, or a directory holding one (tokenizer.json
    preferred). The tokenizer.json's own truncation and padding are switched off (the engine frames
    sequences itself). `lowercase` applies to a vocab.txt only (None: `do_lower_case` from a
    tokenizer_config.json beside it, else True). `backend`: "auto" (the fast WordPiece when it
    reproduces the tokenizer, else the tokenizers crate), "wordpiece" (error if it cannot), or "hf".
    Ids are identical to the Python `tokenizers` library's for the same tokenizer and text.

    Special tokens come from what the tokenizer declares (docs/data.md, "Tokenizers"): `<role>_token`
    in a tokenizer_config.json or special_tokens_map.json beside it, then the tokenizer.json's
    post_processor (framing), padding and model, then the usual names ([CLS]/<s>, …). Raises
    ValueError for a file that does not parse, or a tokenizer without a pad or mask token or any
    way to frame a sequence (the message names what is missing and where it looked).
    """

    def __init__(self, path: _Path, *, lowercase: Optional[bool] = None, backend: str = "auto") -> None: ...
    @property
    def vocab_size(self) -> int:
        """Number of ids (largest id + 1, added tokens included)."""
    @property
    def cls_id(self) -> Optional[int]:
        """The cls token's id ([CLS], <s>, …), None when the tokenizer has none."""
    @property
    def sep_id(self) -> Optional[int]:
        """The sep token's id ([SEP], </s>, …), None when the tokenizer has none."""
    @property
    def pad_id(self) -> int: ...
    @property
    def mask_id(self) -> int: ...
    @property
    def unk_id(self) -> Optional[int]:
        """None for a tokenizer without an unknown token (a byte-level BPE may have none)."""
    @property
    def special_ids(self) -> list[int]:
        """Ids never masked nor drawn as random replacements: the roles, the framing and added special tokens."""
    @property
    def special_tokens(self) -> dict[str, tuple[str, int]]:
        """Each role the tokenizer declares ("cls", "sep", "pad", "mask", "unk", "bos", "eos") -> (token, id)."""
    @property
    def framing(self) -> tuple[list[int], list[int]]:
        """(ids before, ids after) every sequence: the tokenizer's single-sequence template, e.g.
        ([cls_id], [sep_id])."""
    @property
    def word_rule(self) -> str:
        """What a word is for whole-word masking: "pre-tokenizer" (WordPiece: a word and its ## pieces),
        "byte-level" (BPE: a word starts at a token beginning with Ġ or other whitespace) or
        "metaspace" (SentencePiece: a word starts at ▁)."""
    @property
    def backend(self) -> str:
        """"wordpiece" (fast path) or "hf" (tokenizers crate): the path in use."""
    @property
    def path(self) -> Path:
        """The tokenizer file loaded (the tokenizer.json or vocab.txt inside a directory given)."""
    def encode(self, texts: Sequence[str], *, num_threads: Optional[int] = None) -> list[list[int]]:
        """Ids of each text (no special tokens), encoded in parallel on `num_threads` threads (None: one per core)."""
    def word_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """For each text, the word index (from 0) of every token: whole-word masking's grouping (`word_rule`)."""
    def token_to_id(self, token: str) -> Optional[int]:
        """The id of `token`, or None when it is not in the vocabulary."""

class StreamOptions:
    """Every option of a masked-LM stream, typed, defaulted and validated in Rust (`rust/options.rs`,
    where each option's documentation lives; `fields()` returns it). `StreamOptions(**options)`
    raises ValueError naming the option for an unknown name, a value of the wrong type, or one
    outside its rule. Read an option as an attribute. One line per option below (its type and
    default; a test compares them with the Rust declaration).
    """

    seq_len: int = 128
    batch_size: int = 32
    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    masking: Literal["uniform", "frequency", "whole_word"] = "uniform"
    frequency_targets: Literal["eligible", "all_tokens"] = "eligible"
    smoothing: float = 0.7
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    packing: bool = False
    min_seq_len: int = 12
    max_unk_ratio: float = 0.5
    padding: Literal["fixed", "dynamic"] = "fixed"
    pad_to_multiple_of: int = 8
    shuffle: bool = True
    drop_last: bool = True
    window_batches: int = 64
    num_threads: Optional[int] = None
    prefetch: int = 16
    text_field: str = "text"
    paragraphs: bool = False
    on_bad_json: Literal["skip", "raise"] = "skip"
    max_document_bytes: int = 16 << 20

    def __init__(self, **options: Any) -> None: ...
    @staticmethod
    def fields() -> list[dict[str, Any]]:
        """One dict per option, in declaration order: name, type (as spelled above), default, doc,
        changes_batches (whether it changes the batches, i.e. belongs in a resume fingerprint)."""
    def to_dict(self) -> dict[str, Any]:
        """Every option and its value."""

class TextFeed:
    """Texts handed over from Python in chunks (`distilx.data` makes one for an in-memory or iterable
    `datasets` dataset). `chunks()` returns an iterator of lists of texts (str, or None for a null
    row); the engine calls it once per pass over the corpus, from its reader thread, holding the GIL
    only while it takes one chunk. Resuming a pass calls it again and skips the rows already read,
    so it must yield the same rows in the same order every time. `name` appears in messages and in
    `Stream.files()`. An exception it raises becomes a ValueError naming the feed."""

    def __init__(self, chunks: Callable[[], Iterator[list[Optional[str]]]], name: str) -> None: ...
    @property
    def name(self) -> str: ...

class Stream:
    """The engine behind `distilx.MaskedLMStream` (which loads the tokenizer, token counts and
    cache, and keeps the resume state).

    - files: files, directories (recursive; .txt/.jsonl, optionally .gz/.zst; .parquet; .arrow) and
      globs, and TextFeeds, in order (empty with a cache). Parquet and Arrow files are checked now
      (they parse, `text_field` is a string column).
    - options: every other setting (see `StreamOptions`).
    - token_counts: frequency masking's table, one count per id (None: counted over the corpus now,
      reading as `options` say).
    - cache: path of a cache from `build_cache` (files are then ignored).
    """

    def __init__(self, files: Sequence[_Input], tokenizer: Tokenizer, options: StreamOptions, *,
                 token_counts: Optional[npt.NDArray[np.uint64]] = None, cache: Optional[_Path] = None) -> None: ...
    def next_batch(self) -> Optional[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64],
                                          npt.NDArray[np.uint64]]]:
        """(input_ids, attention_mask, labels), each int64 [B, L] (labels -100 off target), and the rows'
        starts, uint64 [B, 2] of (document index, token offset), or None at the end of the epoch — the
        epoch counter then advances. Blocks (GIL released) until ready; restarts its producer when
        called in a forked child."""
    def position(self) -> _Position:
        """(epoch, file, offset, doc_index, token_offset, batch_in_window, batches_done): the
        position after the last batch handed out. `offset` is where the window's first document is
        in its file: the byte offset (decompressed) for .txt/.jsonl, the row number for Parquet,
        Arrow and a TextFeed, or its place in this rank's order for a cache."""
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
    def files(self) -> list[Path]:
        """The corpus files, in reading order (a TextFeed by its name; empty for a cache)."""
    @property
    def options(self) -> StreamOptions: ...
    @property
    def token_counts(self) -> Optional[npt.NDArray[np.uint64]]:
        """Frequency masking's table (given or counted); None for the other maskings."""
    def stats(self) -> dict[str, int]:
        """Cumulative counters: documents, lines, bytes, sequences, tokens, batches, padded_tokens,
        target_tokens, skipped_lines, empty_lines, oversized_lines, bad_json_lines, invalid_bytes,
        null_rows, empty_documents, dropped_short, dropped_unk, files_opened. For Parquet, Arrow and
        TextFeeds a row counts as a line."""

def count_tokens(files: Sequence[_Input], tokenizer: Tokenizer, options: Optional[StreamOptions] = None) -> npt.NDArray[np.uint64]:
    """Occurrences of every id over the corpus (one pass, every rank's documents, read as `options`
    say: text_field, paragraphs, on_bad_json, max_document_bytes, num_threads), shape [vocab_size]."""

def build_cache(files: Sequence[_Input], tokenizer: Tokenizer, path: _Path, options: Optional[StreamOptions] = None, *,
                word_starts: bool = True) -> dict[str, int]:
    """Tokenize a corpus (read as `options` say) into a memory-mapped cache (written to a temporary
    name, then renamed); returns documents, tokens and the reading counters of `Stream.stats()`
    (lines, bytes, skipped_lines, empty_lines, oversized_lines, bad_json_lines, invalid_bytes,
    null_rows, files_opened)."""

def cache_info(path: _Path, tokenizer: Optional[Tokenizer] = None) -> dict[str, int]:
    """Validate a cache (length, magic, version, checksum, and the tokenizer when given) and return
    documents, tokens, id_bytes, word_starts (a bool). ValueError when it is truncated, corrupt or
    foreign."""

def stage_costs(files: Sequence[str], tokenizer: Tokenizer, *, seq_len: int = 128, batch_size: int = 32,
                packing: bool = False, num_threads: Optional[int] = None) -> dict[str, Union[int, float]]:
    """Benchmark helper (`bench/bench_data.py`), present only in builds with the `bench` cargo
    feature (scripts/bootstrap.sh builds the development install with it; the wheel has none): run
    read -> tokenize -> frame -> mask one stage at a time over a corpus held in memory; returns
    documents, bytes, tokens, rows, padded_tokens and, per stage, wall seconds (`read_s`,
    `tokenize_s`, `frame_s`, `mask_s`) and process CPU seconds (`read_cpu`, ...)."""
