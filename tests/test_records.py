"""Labelled files under hostile input (issue 18 rows 7, 8, 16, 17, 19): the one bounded reader
(distilx/tasks/records.py) that every task's records come through, on real files."""

import json
import tracemalloc

import pytest

from distilx.tasks.labelled_data import LabelSet, read_examples
from distilx.tasks.records import MAX_RECORD_BYTES, RecordError, json_document, lines, records

LABELS = LabelSet(("negative", "neutral", "positive"))


def write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def read(path):
    return read_examples([path], ["text"], "label", LABELS)


def test_a_long_csv_cell_within_the_bound_is_read(tmp_path):
    """Row 7: csv's own 128 KiB field limit refused a 200,000-character cell with no file or line."""
    cell = "word " * 40_000
    path = write(tmp_path / "long.csv", f'text,label\n"{cell}",positive\nshort,0\n')
    assert read(path) == ([(cell,), ("short",)], [2, 0])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_record_over_the_bound_is_refused_without_being_held(tmp_path, suffix):
    """Rows 7 and 16: a 20 MB text is refused naming file:line, after reading about the bound of it (the
    old reader held it whole, then tokenized it for minutes)."""
    text = "x" * (20 << 20)
    body = (f'text,label\nfine,0\n"{text}",1\n' if suffix == ".csv"
            else '{"text": "fine", "label": 0}\n' + json.dumps({"text": text, "label": 1}) + "\n")
    path = write(tmp_path / f"huge{suffix}", body)
    del text, body
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=rf"huge{suffix}:[23]: a record of more than 1 MiB .*max_record_bytes"):
            read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_RECORD_BYTES


def test_a_csv_record_spanning_lines_is_bounded_as_a_whole(tmp_path):
    """A quoted cell with newlines: each line is short, the record is not."""
    cell = "\n".join(["y" * 1000] * 20)
    path = write(tmp_path / "multi.csv", f'text,label\n"{cell}",0\n')
    assert read(path) == ([(cell,)], [0])
    with pytest.raises(RecordError, match=r"multi.csv:2: a record of more than 10000 bytes"):
        list(records(path, max_record_bytes=10_000))


def test_deep_nesting_is_one_line_naming_file_and_line(tmp_path):
    """Row 8: a .jsonl line nested 100,000 deep was a RecursionError traceback."""
    path = write(tmp_path / "deep.jsonl", '{"text": "a", "label": 0}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match=r"deep.jsonl:2: JSON nested too deeply"):
        read(path)


@pytest.mark.parametrize("suffix, body, where", [
    (".jsonl", b'{"text": "ok", "label": 0}\n{"text": "caf\xe9", "label": 0}\n', "2: byte 0xe9 at column 14"),
    (".csv", b"text,label\nok,0\ncaf\xe9,1\n", "3: byte 0xe9 at column 4"),
])
def test_a_byte_that_is_not_utf8_is_named_with_file_and_line(tmp_path, suffix, body, where):
    """Row 17: a Latin-1 byte was a codec error without file or line."""
    path = write(tmp_path / f"latin1{suffix}", body)
    with pytest.raises(ValueError, match=rf"latin1{suffix}:{where} is not UTF-8: save the file as UTF-8"):
        read(path)


@pytest.mark.parametrize("label", ["²", "٣", "1" * 5000])
def test_odd_labels_are_named_with_file_and_line(tmp_path, label):
    """Row 17 and "also seen": "²" (str.isdigit, int() refuses it) and a 5,000-digit label were int() errors
    without file or line; the Arabic-Indic "٣" was read as id 3. Ids are ASCII digits."""
    for path in (write(tmp_path / "odd.jsonl", json.dumps({"text": "a", "label": label}) + "\n"),
                 write(tmp_path / "odd.csv", f"text,label\na,{label}\n")):
        with pytest.raises(ValueError, match=r"odd\.(jsonl|csv):[12]: label '.{1,80} is not one the teacher knows"):
            read(path)


def test_a_json_integer_over_python_s_digit_limit_is_named(tmp_path):
    path = write(tmp_path / "big.jsonl", '{"text": "a", "label": ' + "7" * 5000 + "}\n")
    with pytest.raises(ValueError, match=r"big.jsonl:1: not valid JSON \(Exceeds the limit"):
        read(path)


@pytest.mark.parametrize("suffix, body", [
    (".jsonl", '{"text": "first", "label": "positive"}\n{"text": "second", "label": 0}\n'),
    (".csv", "text,label\nfirst,positive\nsecond,0\n"),
])
def test_a_utf8_bom_is_read_as_utf8(tmp_path, suffix, body):
    """Row 19: a BOM (Excel's "CSV UTF-8", Notepad) was refused: "Unexpected UTF-8 BOM", field '\\ufefftext'."""
    path = write(tmp_path / f"bom{suffix}", b"\xef\xbb\xbf" + body.encode())
    assert read(path) == ([("first",), ("second",)], [2, 0])


def test_csv_rows_short_of_cells_and_duplicate_columns_are_named(tmp_path):
    with pytest.raises(RecordError, match=r"short.csv:3: 1 cells but the header names 2 columns"):
        read(write(tmp_path / "short.csv", "text,label\na,0\nb\n"))
    with pytest.raises(RecordError, match=r"dup.csv:1: the header names column 'text' twice"):
        read(write(tmp_path / "dup.csv", "text,text,label\na,b,0\n"))


def test_records_name_each_record_s_first_line(tmp_path):
    path = write(tmp_path / "a.csv", 'text,label\n\n"two\nlines",0\nnext,1\n')
    assert list(records(path)) == [(f"{path}:3", {"text": "two\nlines", "label": "0"}),
                                   (f"{path}:5", {"text": "next", "label": "1"})]
    jsonl = write(tmp_path / "a.jsonl", '\n{"a": 1}\r\n\n{"b": "\\u00e9"}\r{"c": 2}')
    assert list(records(jsonl)) == [(f"{jsonl}:2", {"a": 1}), (f"{jsonl}:4", {"b": "é"}), (f"{jsonl}:5", {"c": 2})]
    old_mac = write(tmp_path / "mac.csv", 'text,label\r"a\rb",0\rc,1\r')  # "CSV (Macintosh)": CR line endings
    assert list(records(old_mac)) == [(f"{old_mac}:2", {"text": "a\rb", "label": "0"}),
                                      (f"{old_mac}:4", {"text": "c", "label": "1"})]


def test_lines_keep_blank_lines_and_name_every_problem(tmp_path):
    """The bounded line reader other formats (CoNLL) build on: BOM dropped, endings stripped, file:line."""
    path = write(tmp_path / "a.conll", b"\xef\xbb\xbfEU B-ORG\r\n\nrejects O\n")
    assert list(lines(path)) == [(f"{path}:1", "EU B-ORG"), (f"{path}:2", ""), (f"{path}:3", "rejects O")]
    with pytest.raises(RecordError, match=r"b.conll:2: a record of more than 100 bytes"):
        list(lines(write(tmp_path / "b.conll", "ok\n" + "z" * 101 + "\n"), max_record_bytes=100))
    with pytest.raises(RecordError, match=r"c.conll:2: byte 0xff at column 3 is not UTF-8"):
        list(lines(write(tmp_path / "c.conll", b"ok\nab\xff\n")))


def test_json_document(tmp_path):
    path = write(tmp_path / "squad.json", b'\xef\xbb\xbf{"data": [1, 2]}')
    assert json_document(path, max_bytes=100) == {"data": [1, 2]}
    with pytest.raises(RecordError, match=r"squad.json: 19 bytes, over the 10 bytes bound"):
        json_document(path, max_bytes=10)
    with pytest.raises(RecordError, match=r"bad.json:2: not valid JSON"):
        json_document(write(tmp_path / "bad.json", '{"a":\n ]'), max_bytes=100)
    with pytest.raises(RecordError, match=r"deep.json:1: JSON nested too deeply"):
        json_document(write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000), max_bytes=1 << 20)
    with pytest.raises(RecordError, match=r"latin.json:2: byte 0xe9 at column 7 is not UTF-8"):
        json_document(write(tmp_path / "latin.json", b'{\n"a": "\xe9"}'), max_bytes=100)
