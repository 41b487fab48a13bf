"""Reading labelled files with bounds: every task's records come through here.

One reader for the files a task's examples come from, so that every format meets hostile input the
same way: a UTF-8 byte-order mark is read as UTF-8 (Excel and Notepad write one); a record over
`max_record_bytes` is refused before it is held whole (like the masked-LM engine's
`max_document_bytes`, a 50 MB line costs neither minutes nor gigabytes), while a long CSV cell within it
is read (csv's own 128 KiB field limit is raised to the bound); a byte that is not UTF-8, JSON nested past
what the parser can hold, a CSV row with more or fewer cells than its header — each is one ValueError
naming `file:line` and the fix, never a codec or parser traceback.

    for where, record in records(path):          # .jsonl: each JSON object; .csv: each row as a dict
        ...                                        # where = "path:line" (the record's first line)
    for where, text in lines(path):               # any text format (CoNLL): each line, ending stripped
        ...
    document = json_document(path, max_bytes=n)   # one JSON value filling the file (SQuAD .json)

Records are dicts: a .jsonl line is one JSON object (blank lines skipped); a .csv file's first row names
the columns (duplicates refused) and every other row has exactly that many cells (blank rows skipped).
Errors are `RecordError` (a ValueError): the CLI prints them as one line.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Iterator

__all__ = ["RecordError", "MAX_RECORD_BYTES", "RECORD_SUFFIXES", "records", "lines", "json_document", "brief"]

#: The default bound of one record (a .jsonl line, a .csv row, a text line): far above any example a
#: model reads (seq_len 8192 is ~50 KB of text), far below what would take minutes to tokenize.
MAX_RECORD_BYTES = 1 << 20
RECORD_SUFFIXES = (".jsonl", ".csv")


class RecordError(ValueError):
    """A labelled file that cannot be read as it is; the message starts with file:line."""


def brief(value, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: a message quotes a bad value without pasting a megabyte."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} characters)"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


def _too_long(where: str, limit: int) -> RecordError:
    return RecordError(f"{where}: a record of more than {_mib(limit)} (the bound of one labelled example, "
                       "max_record_bytes): shorten or split it; a model reads at most seq_len tokens of it anyway")


# what the surrogateescape error handler decodes a byte that is not UTF-8 to
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _not_utf8(where: str, line: str) -> None:
    bad = _NOT_UTF8.search(line)
    if bad:
        raise RecordError(f"{where}: byte 0x{ord(bad.group()) - 0xdc00:02x} at column {bad.start() + 1} is not "
                          "UTF-8: save the file as UTF-8")


def _text_lines(path: Path, limit: int) -> Iterator[tuple[str, str, int]]:
    """("path:line", the line with its ending, its size in bytes without it) of `path` read as UTF-8 (a BOM
    dropped), lines ending at "\n", "\r\n" or "\r" (universal newlines; endings kept, as csv wants them).
    A line over `limit` bytes is refused after reading at most limit + 1 characters of it; a byte that
    is not UTF-8 is named with its line and column."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        line_no = 0
        while True:
            line = f.readline(limit + 1)
            if not line:
                return
            line_no += 1
            where = f"{path}:{line_no}"
            content = line.rstrip("\r\n")
            size = len(content) if len(content) > limit else len(content.encode("utf-8", "surrogateescape"))
            if size > limit:
                raise _too_long(where, limit)
            _not_utf8(where, line)
            yield where, line, size


def lines(path: str | os.PathLike, *, max_record_bytes: int = MAX_RECORD_BYTES) -> Iterator[tuple[str, str]]:
    """("path:line", text) for every line of a UTF-8 text file (a BOM dropped), blank ones included, without
    its ending ("\n", "\r\n" or "\r"). RecordError naming file:line for a line over `max_record_bytes`
    or a byte that is not UTF-8."""
    for where, line, _ in _text_lines(Path(path), max_record_bytes):
        yield where, line.rstrip("\r\n")


def _parse_json(text: str, where: str):
    try:
        return json.loads(text)
    except RecursionError:
        raise RecordError(f"{where}: JSON nested too deeply for the parser (about 1000 levels): a labelled record "
                          "is a flat object of texts and labels") from None
    except ValueError as exc:  # JSONDecodeError, and an integer of over 4300 digits
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise RecordError(f"{where}: not valid JSON ({reason}): each line of a .jsonl file is one JSON "
                          "object") from None


def _jsonl(path: Path, limit: int) -> Iterator[tuple[str, dict]]:
    for where, text in lines(path, max_record_bytes=limit):
        if not text.strip():
            continue
        record = _parse_json(text, where)
        if not isinstance(record, dict):
            raise RecordError(f"{where}: a JSON {type(record).__name__}, not an object with the text and label "
                              "fields")
        yield where, record


def _csv(path: Path, limit: int) -> Iterator[tuple[str, dict]]:
    # A record may span lines (a quoted cell with a newline): the bound counts the bytes of its lines.
    state = {"line": 0, "first": 1, "bytes": 0}

    def feed():
        for _, line, size in _text_lines(path, limit):
            state["line"] += 1
            state["bytes"] += size
            if state["bytes"] > limit:
                raise _too_long(f"{path}:{state['first']}", limit)
            yield line

    # csv's field limit (128 KiB by default, process-wide) would refuse a long cell of a record within
    # the bound; the bound above keeps memory in check, so the field limit is raised to it.
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)
    reader = csv.reader(feed())
    header = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise RecordError(f"{path}:{state['first']}: not valid CSV ({exc}): quote cells that hold commas, "
                              "quotes or newlines") from None
        where = f"{path}:{state['first']}"
        state["first"], state["bytes"] = state["line"] + 1, 0
        if not row:  # a blank line
            continue
        if header is None:
            duplicates = sorted({name for name in row if row.count(name) > 1})
            if duplicates:
                raise RecordError(f"{where}: the header names column {duplicates[0]!r} twice: give each column its "
                                  "own name")
            header = row
            continue
        if len(row) != len(header):
            raise RecordError(f"{where}: {len(row)} cells but the header names {len(header)} columns")
        yield where, dict(zip(header, row))


def records(path: str | os.PathLike, *, max_record_bytes: int = MAX_RECORD_BYTES) -> Iterator[tuple[str, dict]]:
    """("path:line", record) for every record of a .jsonl or .csv file, in file order (see the module doc).
    FileNotFoundError for a missing file; RecordError naming file:line for anything malformed."""
    path = Path(path)
    if path.suffix not in RECORD_SUFFIXES:
        raise RecordError(f"{path}: labelled files must be {' or '.join(RECORD_SUFFIXES)} (one example per line / row)")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    reader = _jsonl if path.suffix == ".jsonl" else _csv
    yield from reader(path, max_record_bytes)


def json_document(path: str | os.PathLike, *, max_bytes: int) -> object:
    """The one JSON value a .json file holds (a BOM dropped), for formats that are a single document
    (SQuAD's .json). RecordError for a file over `max_bytes` (checked before reading), bytes that are
    not UTF-8 or JSON that does not parse, naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    size = path.stat().st_size
    if size > max_bytes:
        raise RecordError(f"{path}: {_mib(size)}, over the {_mib(max_bytes)} bound of one JSON document: split it, "
                          "or write it as .jsonl (one record per line)")
    text = path.read_text(encoding="utf-8-sig", errors="surrogateescape")
    bad = _NOT_UTF8.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        _not_utf8(f"{path}:{line}", text[text.rfind("\n", 0, bad.start()) + 1:])
    try:
        return json.loads(text)
    except RecursionError:
        raise RecordError(f"{path}:1: JSON nested too deeply for the parser (about 1000 levels)") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    except ValueError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc})") from None
