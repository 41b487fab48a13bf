"""The data engine's Python face: masked-LM batches as torch tensors from raw text or a cache.

All the work (reading, tokenizing, framing, shuffling, masking, batching) happens in Rust
(`distilx._native`) on a thread pool with the GIL released; this module validates options, turns
the arrays into torch tensors without copying (`torch.from_numpy`), and keeps the resume state.

    stream = MaskedLMStream("corpus/*.txt", "tokenizer.json", seq_len=128, batch_size=32)
    for epoch in range(3):
        for batch in stream:          # dict of int64 tensors [B, L]
            loss = model(**batch).loss
    state = stream.state_dict()       # small: resume later with load_state_dict(state)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence, Union

import numpy as np
import torch

from . import _native
from .dataset_inputs import engine_inputs

__all__ = ["MaskedLMStream", "StreamOptions", "Tokenizer", "encode", "build_cache", "count_tokens", "options_help"]

PathLike = Union[str, os.PathLike]
#: What a corpus is given as: paths (files, directories, globs), `datasets` datasets, or a list of them.
Corpus = Union[PathLike, Any, Sequence[Union[PathLike, Any]]]

#: `distilx.Tokenizer(path, *, lowercase=None, backend="auto")` — see `_native.pyi` for the API.
Tokenizer = _native.Tokenizer

#: Every stream option, typed, defaulted and validated in Rust (`rust/options.rs`):
#: `StreamOptions(seq_len=64, masking="frequency")`; `StreamOptions.fields()` lists them.
StreamOptions = _native.StreamOptions

_STATE_VERSION = 1


# Loaded tokenizers by (path, size, mtime, options): a Tokenizer is immutable, and building the fast
# WordPiece tables takes seconds, so streams and encode() calls over one file share one instance.
_TOKENIZERS: dict[tuple, Tokenizer] = {}


def _as_tokenizer(tokenizer: Union[PathLike, Tokenizer], backend: str = "auto", lowercase: bool | None = None) -> Tokenizer:
    if isinstance(tokenizer, _native.Tokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(tokenizer))
        try:
            st = os.stat(path)
            key = (path, st.st_size, st.st_mtime_ns, backend, lowercase)
        except OSError:
            key = None  # let the native loader raise the right error
        if key is not None and key in _TOKENIZERS:
            return _TOKENIZERS[key]
        tok = _native.Tokenizer(path, lowercase=lowercase, backend=backend)
        if key is not None:
            if len(_TOKENIZERS) >= 8:
                _TOKENIZERS.pop(next(iter(_TOKENIZERS)))
            _TOKENIZERS[key] = tok
        return tok
    raise TypeError(f"tokenizer must be a path (tokenizer.json, vocab.txt or a directory) or a distilx.Tokenizer, "
                    f"not {type(tokenizer).__name__}")


def encode(texts: Sequence[str], tokenizer: Union[PathLike, Tokenizer], *, backend: str = "auto",
           num_threads: int | None = None) -> list[list[int]]:
    """Token ids of each text, without special tokens — the engine's own tokenization (the same Rust
    code path the stream uses). `tokenizer`: a tokenizer.json, a vocab.txt, a directory holding one,
    or a `Tokenizer`."""
    if isinstance(texts, str):
        raise TypeError("encode() takes a list of texts; wrap a single text in a list: encode([text], tokenizer)")
    return _as_tokenizer(tokenizer, backend).encode(list(texts), num_threads=num_threads)


def options_help() -> str:
    """One line per stream option: name, type, default and its documentation (from `rust/options.rs`)."""
    return "\n".join(f"{f['name']} ({f['type']}, default {f['default']!r}): {f['doc']}" for f in StreamOptions.fields())


def count_tokens(files: Corpus, tokenizer: Union[PathLike, Tokenizer], **options: Any) -> np.ndarray:
    """How often each id occurs in the corpus (one tokenization pass): the table frequency masking
    weighs by. `options` are stream options (the reading ones matter: text_field, paragraphs,
    on_bad_json, max_document_bytes, num_threads), so a stream with the same options reads exactly
    the documents counted. Save it with `np.save` and pass the file as `token_counts=` to skip the
    pass later."""
    opts = StreamOptions(**options)
    return _native.count_tokens(engine_inputs(files, opts.text_field)[0], _as_tokenizer(tokenizer), opts)


def build_cache(files: Corpus, tokenizer: Union[PathLike, Tokenizer], path: PathLike, **options: Any) -> dict:
    """Tokenize a corpus once into a memory-mapped cache file (ids as uint16 when the vocabulary
    allows, plus an index and word boundaries); pass it as `MaskedLMStream(..., cache=path)`.
    `options` are stream options (the reading ones matter, as for `count_tokens`). Returns the
    build statistics. A truncated or corrupt cache is refused with a ValueError."""
    opts = StreamOptions(**options)
    inputs = engine_inputs(files, opts.text_field)[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _native.build_cache(inputs, _as_tokenizer(tokenizer), os.fspath(path), opts)


class MaskedLMStream:
    """Masked-LM batches from text files (or a pre-tokenized cache), ready for a BERT-style model.

    Iterating yields one epoch of dicts `input_ids`, `attention_mask`, `labels` (int64 tensors
    [batch_size, L]; labels are -100 off target) from the current position; at its end the epoch
    counter advances, so `for epoch in range(E): for batch in stream:` works.

    `files`: files, directories and globs (.txt/.jsonl, optionally .gz/.zst; .parquet; .arrow), a
    `datasets.Dataset` / `IterableDataset`, or a list of them (None with an existing `cache`);
    `text_field` names the text column of Parquet, Arrow and datasets. `tokenizer`: a
    tokenizer.json, vocab.txt, a folder holding one, or a `Tokenizer` (`backend`, `lowercase`: how
    to load it). `token_counts`: frequency masking's table (an array or an `.npy` path; default:
    counted over the corpus). `cache`: a `build_cache` file (built from `files` first if missing).
    Every other keyword is a stream option, validated in Rust (docs/data.md):

    """

    def __init__(self, files: Corpus | None, tokenizer: Union[PathLike, Tokenizer], *,
                 token_counts: Union[PathLike, np.ndarray, Sequence[int], None] = None, cache: PathLike | None = None,
                 backend: str = "auto", lowercase: bool | None = None, **options: Any):
        self.options = StreamOptions(**options)
        self.tokenizer = _as_tokenizer(tokenizer, backend, lowercase)
        file_list, file_identity = engine_inputs(files, self.options.text_field)
        cache_path = None
        if cache is not None:
            cache_path = Path(cache)
            if not cache_path.exists():
                if not file_list:
                    raise FileNotFoundError(f"cache {cache_path} does not exist and no files were given to build it from")
                build_cache(file_list, self.tokenizer, cache_path, **self.options.to_dict())
        elif not file_list:
            raise ValueError("no input files were given (pass a file, a directory, a glob, or a list of them)")
        counts = None if token_counts is None else self._load_counts(token_counts)
        # what another shard of the same data is built from (for_shard): the inputs, and the counts
        self._inputs = dict(files=files, tokenizer=self.tokenizer, cache=cache_path)
        self.last_origin: np.ndarray | None = None
        self._native = _native.Stream(file_list, self.tokenizer, self.options, token_counts=counts,
                                      cache=os.fspath(cache_path) if cache_path else None)
        # What a resume state must match: the inputs and every option that changes the batches.
        batch_options = {f["name"] for f in StreamOptions.fields() if f["changes_batches"]}
        self._config = dict(files=file_identity, tokenizer=os.fspath(self.tokenizer.path),
                            cache=os.fspath(cache_path) if cache_path else None,
                            **{k: v for k, v in self.options.to_dict().items() if k in batch_options})

    @property
    def token_counts(self) -> np.ndarray | None:
        """Frequency masking's table (given, or counted over the corpus at construction); None for
        the other maskings."""
        return self._native.token_counts

    def _load_counts(self, token_counts) -> np.ndarray:
        if isinstance(token_counts, (str, os.PathLike)):
            counts = np.load(os.fspath(token_counts))
        else:
            counts = np.asarray(token_counts)
        if counts.ndim != 1 or (counts < 0).any():
            raise ValueError(f"token_counts must be a 1-D table of non-negative counts, one per id "
                             f"({self.tokenizer.vocab_size}), got shape {counts.shape}; compute it with "
                             "distilx.data.count_tokens")
        return np.ascontiguousarray(counts, dtype=np.uint64)

    # -- iteration -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        native = self._native
        while True:
            out = native.next_batch()
            if out is None:
                return
            input_ids, attention_mask, labels, self.last_origin = out
            yield {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask),
                   "labels": torch.from_numpy(labels)}

    def __len__(self) -> int:
        n = self.batches_per_epoch
        if n is None:
            raise TypeError("the number of batches is not known before a full pass; call count_batches() "
                            "(one tokenization pass) or use a cache")
        return n

    @property
    def batches_per_epoch(self) -> int | None:
        """Batches per epoch on this rank, or None while unknowable without a pass (single rank,
        raw files, no epoch finished yet: call `count_batches()`)."""
        return self._native.batches_per_epoch

    def count_batches(self) -> int:
        """Count the batches of an epoch now (tokenizes the corpus once; the result is remembered)."""
        return self._native.count_batches()

    @property
    def files(self) -> list[Path]:
        """The corpus files, in reading order (directories and globs expanded)."""
        return self._native.files()

    @property
    def epoch(self) -> int:
        return self._native.epoch

    def set_epoch(self, epoch: int) -> None:
        """Restart at the beginning of `epoch` (masks and order depend on it)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._native.set_epoch(int(epoch))

    def stats(self) -> dict[str, int]:
        """Cumulative counters of the work done so far (documents, sequences, tokens, skipped_lines,
        invalid_bytes, bad_json_lines, ...). The producer runs ahead by the prefetch depth."""
        return self._native.stats()

    # -- resume ----------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(self._config, sort_keys=True).encode()).hexdigest()[:16]

    def for_shard(self, rank: int, world_size: int) -> "MaskedLMStream":
        """The same corpus, options and token counts as rank `rank` of `world_size`, at epoch 0 (a resume
        on another number of processes reads the old shards through these: distilx.resharding)."""
        options = {**self.options.to_dict(), "rank": rank, "world_size": world_size}
        return MaskedLMStream(self._inputs["files"], self._inputs["tokenizer"], cache=self._inputs["cache"],
                              token_counts=self.token_counts, **options)

    @staticmethod
    def position_of(state: dict[str, Any]) -> tuple[int, int]:
        """(epoch, batches handed out in it) of a state_dict()."""
        return int(state["position"][0]), int(state["position"][6])

    def state_dict(self) -> dict[str, Any]:
        """The position after the last batch handed out (queued batches are not consumed)."""
        pos = self._native.position()
        return {"version": _STATE_VERSION, "epoch": pos[0], "position": list(pos), "config": self._fingerprint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume so the next batches equal those of an uninterrupted run from that point."""
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION or "position" not in state:
            raise ValueError("not a MaskedLMStream state (expected the dict state_dict() returned)")
        if state.get("config") != self._fingerprint():
            raise ValueError("this state comes from a stream with another configuration (files, tokenizer, seq_len, "
                             "batch_size, seed, rank, masking, ...); build the stream with the same options to resume")
        pos = tuple(int(x) for x in state["position"])
        if len(pos) != 7:
            raise ValueError("malformed MaskedLMStream state: position must have 7 fields")
        self._native.seek(pos)

    def __repr__(self) -> str:
        o = self.options
        return (f"MaskedLMStream({len(self._config['files'])} file(s), seq_len={o.seq_len}, batch_size={o.batch_size}, "
                f"masking={o.masking!r}, rank={o.rank}/{o.world_size}, epoch={self.epoch})")


MaskedLMStream.__doc__ += "\n".join("    " + line for line in options_help().splitlines()) + "\n"
