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

__all__ = ["MaskedLMStream", "Tokenizer", "encode", "build_cache", "count_tokens"]

PathLike = Union[str, os.PathLike]

#: `distilx.Tokenizer(path, *, lowercase=None, backend="auto")` — see `_native.pyi` for the API.
Tokenizer = _native.Tokenizer

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


def _as_file_list(files: Union[PathLike, Sequence[PathLike], None]) -> list[str]:
    if files is None:
        return []
    if isinstance(files, (str, os.PathLike)):
        return [os.fspath(files)]
    out = [os.fspath(f) for f in files]
    return out


def encode(texts: Sequence[str], tokenizer: Union[PathLike, Tokenizer], *, backend: str = "auto",
           num_threads: int | None = None) -> list[list[int]]:
    """Token ids of each text, without special tokens — the engine's own tokenization (the same Rust
    code path the stream uses). `tokenizer`: a tokenizer.json, a vocab.txt, a directory holding one,
    or a `Tokenizer`."""
    if isinstance(texts, str):
        raise TypeError("encode() takes a list of texts; wrap a single text in a list: encode([text], tokenizer)")
    return _as_tokenizer(tokenizer, backend).encode(list(texts), num_threads=num_threads)


def count_tokens(files: Union[PathLike, Sequence[PathLike]], tokenizer: Union[PathLike, Tokenizer], *,
                 num_threads: int | None = None, text_field: str = "text", paragraphs: bool = False,
                 on_bad_json: str = "skip") -> np.ndarray:
    """How often each id occurs in the corpus (one tokenization pass): the table frequency masking
    weighs by. Save it with `np.save` and pass the file as `token_counts=` to skip the pass later."""
    return _native.count_tokens(_as_file_list(files), _as_tokenizer(tokenizer), num_threads=num_threads,
                                text_field=text_field, paragraphs=paragraphs, on_bad_json=on_bad_json)


def build_cache(files: Union[PathLike, Sequence[PathLike]], tokenizer: Union[PathLike, Tokenizer], path: PathLike, *,
                num_threads: int | None = None, text_field: str = "text", paragraphs: bool = False,
                on_bad_json: str = "skip", max_document_bytes: int = 16 << 20) -> dict:
    """Tokenize a corpus once into a memory-mapped cache file (ids as uint16 when the vocabulary
    allows, plus an index and word boundaries); pass it as `MaskedLMStream(..., cache=path)`.
    Returns the build statistics. A truncated or corrupt cache is refused with a ValueError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _native.build_cache(_as_file_list(files), _as_tokenizer(tokenizer), os.fspath(path), num_threads=num_threads,
                               text_field=text_field, paragraphs=paragraphs, on_bad_json=on_bad_json,
                               max_document_bytes=max_document_bytes)


class MaskedLMStream:
    """Masked-LM batches from text files (or a pre-tokenized cache), ready for a BERT-style model.

    Iterating yields one epoch of dicts `input_ids`, `attention_mask`, `labels` (int64 tensors
    [batch_size, L]; labels are -100 off target) from the current position; at its end the epoch
    counter advances, so `for epoch in range(E): for batch in stream:` works. Every option is
    documented in `distilx/_native.pyi` and docs/data.md.
    """

    def __init__(self, files: Union[PathLike, Sequence[PathLike], None], tokenizer: Union[PathLike, Tokenizer], *,
                 seq_len: int = 128, batch_size: int = 32, mlm_probability: float = 0.15,
                 mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1, masking: str = "uniform",
                 seed: int = 0, rank: int = 0, world_size: int = 1, packing: bool = False, min_seq_len: int = 12,
                 max_unk_ratio: float = 0.5, padding: str = "fixed", pad_to_multiple_of: int = 8,
                 shuffle: bool = True, drop_last: bool = True, window_batches: int = 64,
                 num_threads: int | None = None, prefetch: int = 16, text_field: str = "text",
                 paragraphs: bool = False, on_bad_json: str = "skip", max_document_bytes: int = 16 << 20,
                 token_counts: Union[PathLike, np.ndarray, Sequence[int], None] = None, smoothing: float = 0.7,
                 cache: PathLike | None = None, backend: str = "auto", lowercase: bool | None = None):
        for name, value, low in (("seq_len", seq_len, 3), ("batch_size", batch_size, 1), ("world_size", world_size, 1),
                                 ("prefetch", prefetch, 1), ("window_batches", window_batches, 1),
                                 ("min_seq_len", min_seq_len, 0), ("pad_to_multiple_of", pad_to_multiple_of, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must satisfy 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads must be None (one per core) or an integer >= 1, got {num_threads!r}")
        if not 0.0 <= max_unk_ratio <= 1.0:
            raise ValueError(f"max_unk_ratio must lie in [0, 1], got {max_unk_ratio}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.tokenizer = _as_tokenizer(tokenizer, backend, lowercase)
        file_list = _as_file_list(files)
        cache_path = None
        if cache is not None:
            cache_path = Path(cache)
            if not cache_path.exists():
                if not file_list:
                    raise FileNotFoundError(f"cache {cache_path} does not exist and no files were given to build it from")
                build_cache(file_list, self.tokenizer, cache_path, num_threads=num_threads, text_field=text_field,
                            paragraphs=paragraphs, on_bad_json=on_bad_json, max_document_bytes=max_document_bytes)
        elif not file_list:
            raise ValueError("no input files were given (pass a file, a directory, a glob, or a list of them)")

        counts = None
        if masking == "frequency":
            counts = self._load_counts(token_counts, file_list, cache_path, num_threads, text_field, paragraphs, on_bad_json)
        self.token_counts: np.ndarray | None = counts

        self._config = dict(files=file_list, tokenizer=os.fspath(self.tokenizer.path), seq_len=seq_len,
                            batch_size=batch_size, mlm_probability=mlm_probability,
                            mask_replace_prob=mask_replace_prob, random_replace_prob=random_replace_prob,
                            masking=masking, seed=seed, rank=rank, world_size=world_size, packing=packing,
                            min_seq_len=min_seq_len, max_unk_ratio=max_unk_ratio, padding=padding,
                            pad_to_multiple_of=pad_to_multiple_of, shuffle=shuffle, drop_last=drop_last,
                            window_batches=window_batches, text_field=text_field, paragraphs=paragraphs,
                            max_document_bytes=max_document_bytes, smoothing=smoothing,
                            cache=os.fspath(cache_path) if cache_path else None)
        self._native = _native.Stream(
            file_list, self.tokenizer, seq_len=seq_len, batch_size=batch_size, mlm_probability=float(mlm_probability),
            mask_replace_prob=float(mask_replace_prob), random_replace_prob=float(random_replace_prob),
            masking=masking, seed=seed, rank=rank, world_size=world_size, packing=packing, min_seq_len=min_seq_len,
            max_unk_ratio=float(max_unk_ratio), padding=padding, pad_to_multiple_of=pad_to_multiple_of,
            shuffle=shuffle, drop_last=drop_last, window_batches=window_batches, num_threads=num_threads,
            prefetch=prefetch, text_field=text_field, paragraphs=paragraphs, on_bad_json=on_bad_json,
            max_document_bytes=max_document_bytes,
            token_counts=None if counts is None else [int(c) for c in counts], smoothing=float(smoothing),
            cache=os.fspath(cache_path) if cache_path else None)

    def _load_counts(self, token_counts, file_list, cache_path, num_threads, text_field, paragraphs, on_bad_json):
        if token_counts is None:
            if cache_path is not None:
                return _native.cache_token_counts(os.fspath(cache_path), self.tokenizer)
            return count_tokens(file_list, self.tokenizer, num_threads=num_threads, text_field=text_field,
                                paragraphs=paragraphs, on_bad_json=on_bad_json)
        if isinstance(token_counts, (str, os.PathLike)):
            counts = np.load(os.fspath(token_counts))
        else:
            counts = np.asarray(token_counts)
        if counts.ndim != 1 or counts.shape[0] != self.tokenizer.vocab_size:
            raise ValueError(f"token_counts must be a 1-D table with one count per id ({self.tokenizer.vocab_size}), "
                             f"got shape {counts.shape}; compute it with distilx.data.count_tokens")
        if (counts < 0).any():
            raise ValueError("token_counts must be non-negative")
        return counts.astype(np.uint64)

    # -- iteration -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        native = self._native
        while True:
            out = native.next_batch()
            if out is None:
                return
            input_ids, attention_mask, labels = out
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
    def files(self) -> list[str]:
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
        c = self._config
        return (f"MaskedLMStream({len(c['files'])} file(s), seq_len={c['seq_len']}, batch_size={c['batch_size']}, "
                f"masking={c['masking']!r}, rank={c['rank']}/{c['world_size']}, epoch={self.epoch})")
