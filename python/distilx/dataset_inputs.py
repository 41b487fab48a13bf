"""Corpus inputs as the engine takes them: paths, and Hugging Face `datasets` objects turned into
paths or texts fed from Python (docs/data.md, "Parquet, Arrow and datasets").

- A path stays a path (files, directories, globs), except a `save_to_disk` folder, which becomes
  its Arrow files in order.
- A map-style `datasets.Dataset` that is a plain view of its cache files (no indices mapping from
  select/shuffle/filter, no slice, column removal or other pending transform, nothing in memory)
  becomes those `.arrow` files: the engine memory-maps and reads them in Rust, no Python per row.
- Any other dataset (in memory, with an indices mapping, or an `IterableDataset`) becomes a
  `_native.TextFeed`: the engine's reader thread takes `CHUNK_ROWS` texts at a time from
  `dataset.iter()`, holding the GIL only while it does.

`datasets` is imported only when a dataset is passed.
"""

from __future__ import annotations

import json
import os
from typing import Any

from . import _native

#: Rows a TextFeed hands over per GIL acquisition: large enough that Python's share is small,
#: small enough that a chunk stays a few MB.
CHUNK_ROWS = 1000

_TEXT_TYPES = ("string", "large_string", "string_view")
_ROW_KEEPING_REPLAYS = frozenset({"replace_schema_metadata", "combine_chunks", "remove_column", "drop", "select"})


def _is_dataset(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "datasets"


def _saved_dataset_files(path: str) -> list[str] | None:
    """The Arrow files of a `save_to_disk` folder, in order (None for any other path)."""
    state = os.path.join(path, "state.json")
    if not (os.path.isdir(path) and os.path.isfile(state)):
        return None
    with open(state, encoding="utf-8") as f:
        files = json.load(f).get("_data_files")
    if not files:
        return None
    return [os.path.join(path, entry["filename"]) for entry in files]


def _check_column(dataset: Any, name: str, text_field: str) -> None:
    """A dataset without the text column, or with a non-string one, is refused now, naming the
    columns there are and the fix."""
    features = dataset.features
    if features is None:  # an IterableDataset that does not know its columns: checked per chunk
        return
    columns = ", ".join(f"{k!r} ({v})" for k, v in features.items())
    if text_field not in features:
        raise ValueError(f"{name} has no column {text_field!r}; its columns are: {columns}. "
                         "Pass text_field=<the column holding the text>")
    dtype = getattr(features[text_field], "dtype", None)
    if dtype not in _TEXT_TYPES:
        raise ValueError(f"{name}: column {text_field!r} holds {features[text_field]}, not strings; its columns are: "
                         f"{columns}. Pass text_field=<a string column> (or dataset.cast_column(...) to a string)")


def _plain_arrow_files(dataset: Any) -> list[str] | None:
    """The cache files of a map-style dataset that is exactly their rows in order, else None."""
    from datasets.table import ConcatenationTable, MemoryMappedTable

    if dataset._indices is not None:
        return None
    table = dataset.data
    if isinstance(table, MemoryMappedTable):
        blocks = [table]
    elif isinstance(table, ConcatenationTable) and all(len(row) == 1 for row in table.blocks):
        blocks = [row[0] for row in table.blocks]  # files concatenated row-wise
    else:
        return None  # in memory, or columns joined side by side
    # A replay is a transform the view applies on top of its file: those below keep the file's rows
    # and its text column (checked present); any other (slice, filter, cast, rename, a column
    # added or set) may not, so the dataset is fed from Python instead.
    if not all(isinstance(b, MemoryMappedTable) and all(r[0] in _ROW_KEEPING_REPLAYS for r in b.replays) for b in blocks):
        return None
    return [b.path for b in blocks]


def _feed(dataset: Any, name: str, text_field: str) -> _native.TextFeed:
    if dataset.features is not None:
        dataset = dataset.select_columns([text_field])

    def chunks():
        for batch in dataset.iter(batch_size=CHUNK_ROWS):
            if text_field not in batch:
                raise ValueError(f"{name} has no column {text_field!r}; its columns are: {sorted(batch)}. "
                                 "Pass text_field=<the column holding the text>")
            yield batch[text_field]

    return _native.TextFeed(chunks, name)


def _dataset_inputs(dataset: Any, text_field: str) -> tuple[list, list[str]]:
    import datasets

    kind = type(dataset).__name__
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise TypeError(f"a {kind} holds several splits ({', '.join(dataset)}); pass one, e.g. dataset['train']")
    if not isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        raise TypeError(f"a corpus input is a path or a datasets.Dataset / IterableDataset, not a {kind}")
    name = f"datasets.{kind}" + (f" {dataset.split}" if dataset.split else "")
    _check_column(dataset, name, text_field)
    if isinstance(dataset, datasets.Dataset):
        files = _plain_arrow_files(dataset)
        if files:
            return files, files
        return [_feed(dataset, f"{name} ({len(dataset)} rows)", text_field)], [f"{name} {dataset._fingerprint}"]
    return [_feed(dataset, name, text_field)], [f"{name} {dataset.info.dataset_name} {dataset.column_names}"]


def engine_inputs(files: Any, text_field: str) -> tuple[list, list[str]]:
    """`files` (a path, a dataset, or a list of them; None for none) as the engine's inputs (paths
    and `TextFeed`s, in order), and what identifies them in a resume state's fingerprint."""
    if files is None:
        return [], []
    if not isinstance(files, (list, tuple)):
        files = [files]
    inputs, identity = [], []
    for item in files:
        if _is_dataset(item):
            got, ident = _dataset_inputs(item, text_field)
        elif isinstance(item, _native.TextFeed):
            got, ident = [item], [item.name]
        elif isinstance(item, (str, os.PathLike)):
            path = os.fspath(item)
            got = _saved_dataset_files(path) or [path]
            ident = got
        else:
            raise TypeError(f"a corpus input is a path or a datasets.Dataset / IterableDataset, not a {type(item).__name__}")
        inputs.extend(got)
        identity.extend(ident)
    return inputs, identity
