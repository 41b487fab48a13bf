"""Parquet, Arrow IPC and Hugging Face `datasets` corpora: the same documents as the same text in a
.txt file give the same ids and masks (batch for batch), whatever the writer, compression, string
type or route (Rust reading the files, or texts fed from Python); resume, shards, determinism,
statistics, the cache and bad input as for text. Real documents, the real bert-base-uncased
tokenizer; `datasets` runs offline on temporary folders."""

import os
import subprocess
import sys
import textwrap

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest
import torch

import distilx
from distilx.dataset_inputs import engine_inputs


@pytest.fixture(autouse=True)
def offline_datasets(tmp_path, monkeypatch):
    """`datasets` offline, with its caches in the test's temporary folder: in the environment (for
    subprocesses) and in `datasets.config`, which read it once, when `datasets` was first imported."""
    hf = tmp_path / "hf"
    for name, value in [("HF_DATASETS_OFFLINE", "1"), ("HF_HUB_OFFLINE", "1"), ("HF_HOME", str(hf)),
                        ("HF_DATASETS_CACHE", str(hf / "datasets"))]:
        monkeypatch.setenv(name, value)
    for name, value in [("HF_HUB_OFFLINE", True), ("HF_DATASETS_OFFLINE", True), ("HF_CACHE_HOME", str(hf)),
                        ("HF_DATASETS_CACHE", hf / "datasets"), ("HF_MODULES_CACHE", hf / "modules")]:
        monkeypatch.setattr(datasets.config, name, value)


@pytest.fixture(scope="module")
def docs(english_lines):
    """Real documents, one line each (no newline inside: a .txt line is exactly one row)."""
    return english_lines[:1200]


@pytest.fixture(scope="module")
def txt(tmp_path_factory, docs):
    """The reference: the documents as a .txt file, one per line."""
    p = tmp_path_factory.mktemp("ref") / "docs.txt"
    p.write_text("\n".join(docs) + "\n", encoding="utf-8")
    return p


OPTIONS = dict(seq_len=64, batch_size=16, window_batches=4, seed=3)


def make(files, tok, **kw):
    return distilx.MaskedLMStream(files, tok, **{**OPTIONS, **kw})


def epoch(stream):
    """One epoch as three stacked int64 tensors (fixed padding: every batch has seq_len columns)."""
    batches = list(stream)
    return tuple(torch.cat([b[k] for b in batches]) for k in ("input_ids", "attention_mask", "labels"))


def assert_same(a, b):
    assert len(a[0]) == len(b[0]) and len(a[0]) > 0, (len(a[0]), len(b[0]))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def reference(txt, tok):
    return epoch(make(txt, tok))


def write_parquet(path, column, compression="snappy", rows_per_group=100):
    pq.write_table(pa.table({"id": np.arange(len(column)), "text": column}), path, compression=compression,
                   row_group_size=rows_per_group)
    return path


@pytest.mark.parametrize("compression", ["snappy", "zstd", "gzip", "none"])
def test_parquet_every_compression_equals_the_txt(tmp_path, tok, docs, reference, compression):
    p = write_parquet(tmp_path / "docs.parquet", docs, compression)
    meta = pq.ParquetFile(p).metadata
    assert meta.num_row_groups == 12
    assert meta.row_group(0).column(1).compression == compression.upper().replace("NONE", "UNCOMPRESSED")
    stream = make(p, tok)
    assert_same(epoch(stream), reference)
    assert stream.stats()["documents"] == len(docs) and stream.stats()["lines"] == len(docs)


@pytest.mark.parametrize("kind", ["large_string", "dictionary", "string_view"])
def test_parquet_string_types_equal_the_txt(tmp_path, tok, docs, reference, kind):
    column = {"large_string": pa.array(docs, pa.large_string()), "dictionary": pa.array(docs).dictionary_encode(),
              "string_view": pa.array(docs, pa.string_view())}[kind]
    p = write_parquet(tmp_path / "docs.parquet", column)
    assert_same(epoch(make(p, tok)), reference)


def test_null_and_blank_rows_are_skipped_and_counted(tmp_path, tok, docs, reference):
    rows = []
    for i, d in enumerate(docs):
        rows.append(d)
        if i % 50 == 0:
            rows.append(None)
        if i % 70 == 0:
            rows.append("   ")
    nulls, blanks = rows.count(None), rows.count("   ")
    for path, write in [(tmp_path / "n.parquet", lambda p: write_parquet(p, rows)),
                        (tmp_path / "n.arrow", lambda p: write_ipc(p, rows, stream=True))]:
        write(path)
        stream = make(path, tok)
        assert_same(epoch(stream), reference)  # the skipped rows take no document index
        st = stream.stats()
        assert (st["null_rows"], st["empty_lines"], st["documents"], st["lines"]) == (nulls, blanks, len(docs), len(rows))
        assert st["skipped_lines"] == nulls + blanks


def write_ipc(path, texts, stream, batch_rows=100):
    table = pa.table({"id": np.arange(len(texts)), "text": texts})
    with (pa.ipc.new_stream if stream else pa.ipc.new_file)(path, table.schema) as w:
        for batch in table.to_batches(max_chunksize=batch_rows):
            w.write_batch(batch)
    return path


@pytest.mark.parametrize("stream_format", [False, True])
def test_arrow_ipc_file_and_stream_formats_equal_the_txt(tmp_path, tok, docs, reference, stream_format):
    p = write_ipc(tmp_path / "docs.arrow", docs, stream_format)
    assert_same(epoch(make(p, tok)), reference)


def test_datasets_cache_files_stream_in_rust_and_equal_the_txt(tmp_path, tok, txt, reference):
    """load_dataset("text") on the .txt itself, and save_to_disk / load_from_disk: plain views of
    their Arrow files, which the engine reads in Rust."""
    loaded = datasets.load_dataset("text", data_files=str(txt), split="train", cache_dir=str(tmp_path / "cache"))
    inputs, _ = engine_inputs(loaded, "text")
    assert [os.path.splitext(i)[1] for i in inputs] == [".arrow"], inputs  # the Rust route, not a feed
    assert_same(epoch(make(loaded, tok)), reference)
    loaded.save_to_disk(str(tmp_path / "saved"))
    from_disk = datasets.load_from_disk(str(tmp_path / "saved"))
    assert all(isinstance(i, str) and i.endswith(".arrow") for i in engine_inputs(from_disk, "text")[0])
    assert_same(epoch(make(from_disk, tok)), reference)
    # The saved folder as a path (what `distilx train --train-files` gets) is its Arrow files.
    assert_same(epoch(make(tmp_path / "saved", tok)), reference)


def test_datasets_in_memory_and_iterable_are_fed_from_python(tmp_path, tok, docs, reference):
    in_memory = datasets.Dataset.from_dict({"text": docs, "n": list(range(len(docs)))})
    assert isinstance(engine_inputs(in_memory, "text")[0][0], distilx._native.TextFeed)
    assert_same(epoch(make(in_memory, tok)), reference)
    iterable = in_memory.to_iterable_dataset(num_shards=3)
    assert_same(epoch(make(iterable, tok)), reference)


def test_datasets_views_follow_their_indices(tmp_path, tok, docs, txt):
    """select / shuffle / filter give an indices mapping over the cache file: the engine reads the
    view's rows, in the view's order (fed from Python), as a .txt written in that order."""
    loaded = datasets.load_dataset("text", data_files=str(txt), split="train", cache_dir=str(tmp_path / "cache"))
    views = {"shuffle": loaded.shuffle(seed=1), "select": loaded.select(range(100, 900)),
             "filter": loaded.filter(lambda r: len(r["text"]) % 3 != 0)}
    for name, view in views.items():
        assert isinstance(engine_inputs(view, "text")[0][0], distilx._native.TextFeed), name
        ref = tmp_path / f"{name}.txt"
        ref.write_text("\n".join(view["text"]) + "\n", encoding="utf-8")
        assert_same(epoch(make(view, tok)), epoch(make(ref, tok)))


SOURCES = ["parquet", "arrow", "dataset", "iterable"]


def source(kind, tmp_path, docs):
    if kind == "parquet":
        return write_parquet(tmp_path / "docs.parquet", docs, rows_per_group=37)
    if kind == "arrow":
        return write_ipc(tmp_path / "docs.arrow", docs, stream=True, batch_rows=37)
    ds = datasets.Dataset.from_dict({"text": docs})
    return ds if kind == "dataset" else ds.to_iterable_dataset()


@pytest.mark.parametrize("kind", SOURCES)
def test_resume_mid_epoch_equals_uninterrupted(tmp_path, tok, docs, kind):
    files = source(kind, tmp_path, docs)
    kw = dict(masking="whole_word", padding="dynamic")
    full = list(make(files, tok, **kw))
    for k in (1, 6, len(full) // 2, len(full) - 1):
        s = make(files, tok, **kw)
        it = iter(s)
        for _ in range(k):
            next(it)
        state = s.state_dict()
        resumed = make(files, tok, **kw)
        resumed.load_state_dict(state)
        rest = list(resumed)
        assert len(rest) == len(full) - k and all(torch.equal(x[n], y[n]) for x, y in zip(rest, full[k:]) for n in x), k
    other = make(files, tok, **{**kw, "seed": 4})
    with pytest.raises(ValueError, match="another configuration"):
        other.load_state_dict(state)


@pytest.mark.parametrize("kind", SOURCES)
def test_ranks_are_the_txt_ranks(tmp_path, tok, docs, txt, kind):
    """Rank shards are disjoint, cover the corpus, have equal batch counts, and are exactly the
    .txt's shards (one rule, by document index, for every source)."""
    files = source(kind, tmp_path, docs)
    seen = []
    for rank in range(3):
        got = make(files, tok, rank=rank, world_size=3)
        want = make(txt, tok, rank=rank, world_size=3)
        a, b = epoch(got), epoch(want)
        assert_same(a, b)
        assert got.batches_per_epoch == want.batches_per_epoch == len(a[0]) // 16
        seen.append(a)
    assert len({len(a[0]) for a in seen}) == 1


def test_same_batches_with_any_threads_and_new_masks_each_epoch(tmp_path, tok, docs):
    p = write_parquet(tmp_path / "docs.parquet", docs)
    a = make(p, tok, num_threads=1, prefetch=1)
    e0, e1 = epoch(a), epoch(a)
    assert_same(epoch(make(p, tok, num_threads=2, prefetch=8)), e0)
    assert not torch.equal(e0[2], e1[2])


def test_cache_and_token_counts_from_parquet_and_datasets(tmp_path, tok, docs, txt):
    p = write_parquet(tmp_path / "docs.parquet", docs)
    fed = datasets.Dataset.from_dict({"text": docs})
    want = distilx.data.count_tokens(txt, tok)
    assert want.sum() > 10_000
    for files in (p, fed):
        assert np.array_equal(distilx.data.count_tokens(files, tok), want)
    caches = {}
    for name, files in (("txt", txt), ("parquet", p), ("dataset", fed)):
        caches[name] = tmp_path / f"{name}.dxc"
        built = distilx.build_cache(files, tok, caches[name])
        assert built["documents"] == len(docs)
    ref = epoch(make(None, tok, cache=caches["txt"]))
    for name in ("parquet", "dataset"):
        assert_same(epoch(make(None, tok, cache=caches[name])), ref)


def test_directories_and_globs_pick_up_parquet_and_arrow(tmp_path, tok, docs):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "a.txt").write_text("\n".join(docs[:400]) + "\n", encoding="utf-8")
    write_parquet(d / "b.parquet", docs[400:800])
    write_ipc(d / "c.arrow", docs[800:], stream=False)
    (tmp_path / "all.txt").write_text("\n".join(docs) + "\n", encoding="utf-8")
    s = make(d, tok)
    assert [p.name for p in s._native.files()] == ["a.txt", "b.parquet", "c.arrow"]
    assert_same(epoch(s), epoch(make(tmp_path / "all.txt", tok)))
    assert [p.name for p in make(str(d / "*.[pa]*"), tok)._native.files()] == ["b.parquet", "c.arrow"]


def test_train_files_read_parquet(tmp_path, docs):
    """`distilx train --train-files` with a directory of Parquet files."""
    from distilx.cli import main
    from pipeline_helpers import make_tiny_teacher

    teacher = make_tiny_teacher(tmp_path / "teacher")
    (tmp_path / "data").mkdir()
    write_parquet(tmp_path / "data" / "train.parquet", docs[:600])
    args = ["train", "--teacher", str(teacher), "--train-files", str(tmp_path / "data"), "--output-dir",
            str(tmp_path / "run"), "--student-layers", "2", "--seq-len", "48", "--batch-size", "8", "--progress",
            "false", "--tensorboard", "false", "--eval-batches", "0", "--max-steps", "2"]
    assert main(args) == 0


# -- bad input -------------------------------------------------------------------------------------

def test_truncated_corrupt_and_unsupported_files_name_the_file(tmp_path, tok, docs, reference):
    good_pq = write_parquet(tmp_path / "good.parquet", docs)
    good_ipc = write_ipc(tmp_path / "good.arrow", docs, stream=True)
    for good in (good_pq, good_ipc):
        data = good.read_bytes()
        cut = tmp_path / f"cut{good.suffix}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match=f"cut{good.suffix} is not an? (Parquet|Arrow IPC) file the engine can read"):
            make(cut, tok)  # refused at construction, before any batch
    # Damaged column data behind an intact footer / header: refused when read, naming the file.
    data = bytearray(good_pq.read_bytes())
    data[100:3000] = bytes(2900)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad.parquet"):
        epoch(make(bad, tok))
    # A codec the engine is built without: the message says which ones it reads.
    pq.write_table(pa.table({"text": docs}), tmp_path / "brotli.parquet", compression="brotli")
    with pytest.raises(ValueError, match="brotli.parquet is not a Parquet file the engine can read .*snappy, zstd or gzip"):
        epoch(make(tmp_path / "brotli.parquet", tok))
    with pa.ipc.new_file(tmp_path / "lz4.arrow", pa.schema([("text", pa.string())]),
                         options=pa.ipc.IpcWriteOptions(compression="lz4")) as w:
        w.write_table(pa.table({"text": docs}))
    with pytest.raises(ValueError, match="lz4.arrow is not an Arrow IPC file the engine can read .*uncompressed or zstd"):
        epoch(make(tmp_path / "lz4.arrow", tok))
    zstd_ipc = tmp_path / "zstd.arrow"
    with pa.ipc.new_file(zstd_ipc, pa.schema([("text", pa.string())]), options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(pa.table({"text": docs}))
    assert_same(epoch(make(zstd_ipc, tok)), reference)  # zstd buffers are read
    (tmp_path / "text.arrow").write_text("not arrow at all\n")
    with pytest.raises(ValueError, match="text.arrow is not an Arrow IPC file the engine can read"):
        make(tmp_path / "text.arrow", tok)


def test_missing_or_non_string_column_lists_the_columns(tmp_path, tok, docs):
    p = write_parquet(tmp_path / "d.parquet", docs)
    a = write_ipc(tmp_path / "d.arrow", docs, stream=False)
    for f in (p, a):
        with pytest.raises(ValueError, match='no column "body"') as e:
            make(f, tok, text_field="body")
        assert '"id"' in str(e.value) and '"text"' in str(e.value) and "text_field" in str(e.value)
        with pytest.raises(ValueError, match='column "id" holds Int64, not strings'):
            make(f, tok, text_field="id")
        for fn in (distilx.data.count_tokens, lambda f, t, **kw: distilx.build_cache(f, t, tmp_path / "c.dxc", **kw)):
            with pytest.raises(ValueError, match="no column"):
                fn(f, tok, text_field="body")


def test_datasets_without_the_field_or_with_several_splits(tmp_path, tok, docs):
    ds = datasets.Dataset.from_dict({"body": docs, "n": list(range(len(docs)))})
    with pytest.raises(ValueError, match=r"has no column 'text'; its columns are: 'body' .*'n' .*text_field"):
        make(ds, tok)
    with pytest.raises(ValueError, match=r"column 'n' holds .*int64.*not strings"):
        make(ds, tok, text_field="n")
    assert len(epoch(make(ds, tok, text_field="body"))[0]) > 0
    with pytest.raises(TypeError, match=r"several splits \(train\); pass one"):
        make(datasets.DatasetDict({"train": ds}), tok)
    # An iterable dataset that does not know its columns is checked as it is read.
    def rows():
        for d in docs:
            yield {"body": d}
    unknown = datasets.IterableDataset.from_generator(rows)
    assert unknown.features is None
    with pytest.raises(ValueError, match=r"has no column 'text'; its columns are: \['body'\]"):
        epoch(make(unknown, tok))
    with pytest.raises(TypeError, match="not a int"):
        make(42, tok)


def test_dropping_a_fed_stream_mid_epoch_does_not_hang(tmp_path):
    """The reader thread takes the GIL for each chunk: dropping the stream while it runs must
    release the GIL to stop it (in a subprocess, so a hang fails the test instead of the suite)."""
    code = textwrap.dedent(f"""
        import gc, datasets, distilx
        from distilx import assets
        lines = [l.strip() for l in open(assets.english_corpus()[0], encoding="utf-8") if l.strip()][:40000]
        ds = datasets.Dataset.from_dict({{"text": lines}}).to_iterable_dataset()
        tok = distilx.Tokenizer(assets.minilm_tokenizer_json())
        for _ in range(5):  # dropped while the reader thread is still taking its first rounds
            s = distilx.MaskedLMStream(ds, tok, batch_size=4, seq_len=32, window_batches=1, prefetch=1)
            next(iter(s))
            del s
            gc.collect()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
