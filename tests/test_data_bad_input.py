"""Bad input gets a clear Python exception (or is skipped and counted), never a panic or a hang."""

import gzip
import json
import os
import pickle

import pytest
import zstandard

import distilx


@pytest.fixture(scope="module")
def docs(english_lines):
    return [l for l in english_lines[:400] if len(l) > 200]


def stream(files, tok, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("seq_len", 64)
    return distilx.MaskedLMStream(files, tok, **kw)


def test_missing_paths(tmp_path, tok):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        stream(tmp_path / "missing.txt", tok)
    with pytest.raises(FileNotFoundError, match=r"nothing-\*"):
        stream(str(tmp_path / "nothing-*.txt"), tok)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="holds no .txt/.jsonl"):
        stream(tmp_path / "empty_dir", tok)
    with pytest.raises(ValueError, match="no input files"):
        stream([], tok)


def test_unreadable_file_is_permission_error(tok, docs):
    import tempfile
    d = tempfile.mkdtemp(prefix="distilx-perm-")
    os.chmod(d, 0o755)
    p = os.path.join(d, "secret.txt")
    with open(p, "w") as f:
        f.write("\n".join(docs))
    os.chmod(p, 0)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if os.geteuid() == 0:  # root reads anything: check as an unprivileged user
                os.setgid(65534)
                os.setuid(65534)
            try:
                distilx.MaskedLMStream(p, tok)
                msg = "no error"
            except PermissionError as e:
                msg = f"PermissionError {e}"
            except BaseException as e:  # noqa: BLE001 - report anything else to the parent
                msg = f"{type(e).__name__} {e}"
            os.write(w, msg.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode()
    os.waitpid(pid, 0)
    os.chmod(p, 0o600)
    assert msg.startswith("PermissionError") and "secret.txt" in msg, msg


def test_empty_files_and_too_little_data(tmp_path, tok):
    (tmp_path / "empty.txt").write_text("")
    s = stream(tmp_path / "empty.txt", tok)
    with pytest.raises(ValueError, match="no batch"):
        list(s)
    (tmp_path / "blank.txt").write_text("\n\n   \n\n")
    s = stream(tmp_path / "blank.txt", tok)
    with pytest.raises(ValueError, match="no batch"):
        list(s)
    assert s.stats()["skipped_lines"] == 4


def test_invalid_utf8_is_replaced_and_counted(tmp_path, tok, docs):
    raw = b"\n".join(d.encode() for d in docs[:20])
    raw = raw.replace(b" the ", b" \xff\xfe the ", 5) + b"\n\xc3\x28 broken lead byte " + docs[0].encode() + b"\n"
    (tmp_path / "bad.txt").write_bytes(raw)
    s = stream(tmp_path / "bad.txt", tok, drop_last=False)
    batches = list(s)
    st = s.stats()
    assert st["invalid_bytes"] == 5 * 2 + 1
    assert st["documents"] == 21 and len(batches) > 0


def test_huge_single_line_is_skipped_not_held(tmp_path, tok, docs):
    p = tmp_path / "huge.txt"
    with open(p, "wb") as f:
        f.write("\n".join(docs[:10]).encode() + b"\n")
        block = b"word " * (1 << 20)
        for _ in range(20):  # one 100 MiB line
            f.write(block)
        f.write(b"\n" + "\n".join(docs[10:20]).encode() + b"\n")
    s = stream(p, tok, drop_last=False)
    rows = sum(b["input_ids"].shape[0] for b in s)
    st = s.stats()
    assert st["oversized_lines"] == 1 and st["documents"] == 20 and rows > 0
    # The limit is an option: below a normal document's size, those are skipped too.
    small = stream(p, tok, max_document_bytes=100, drop_last=False)
    with pytest.raises(ValueError, match="no batch"):
        list(small)
    assert small.stats()["oversized_lines"] == 21


def test_jsonl_gz_zst_and_bad_json(tmp_path, tok, docs):
    lines = [json.dumps({"body": d, "id": i}) for i, d in enumerate(docs[:30])]
    lines[3] = "{not json"
    lines[7] = json.dumps({"id": 7})  # no text field
    lines[9] = json.dumps({"body": 5})  # not a string
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    (tmp_path / "b.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(("\n".join(docs[30:60]) + "\n").encode()))
    s = stream([tmp_path / "a.jsonl.gz", tmp_path / "b.txt.zst"], tok, text_field="body", drop_last=False)
    assert len(list(s)) > 0
    st = s.stats()
    assert st["bad_json_lines"] == 3 and st["documents"] == 27 + 30
    strict = stream(tmp_path / "a.jsonl.gz", tok, text_field="body", on_bad_json="raise")
    with pytest.raises(ValueError, match=r"a\.jsonl\.gz line 4.*malformed JSON"):
        list(strict)
    # The line number is counted in the file that holds it, not over the files read before it.
    (tmp_path / "c.jsonl").write_text("\n".join([json.dumps({"body": d}) for d in docs[:5]] + ["{oops"]) + "\n")
    second = stream([tmp_path / "b.txt.zst", tmp_path / "c.jsonl"], tok, text_field="body", on_bad_json="raise")
    with pytest.raises(ValueError, match=r"c\.jsonl line 6: malformed JSON"):
        list(second)
    # A wrong text_field skips every line: the message points at the counters.
    wrong = stream(tmp_path / "a.jsonl.gz", tok)
    with pytest.raises(ValueError, match="no batch"):
        list(wrong)
    assert wrong.stats()["bad_json_lines"] == 30


def test_paragraph_mode(tmp_path, tok, docs):
    text = "\n\n".join("\n".join(d.split(". ")) for d in docs[:12]) + "\n"
    (tmp_path / "p.txt").write_text(text)
    s = stream(tmp_path / "p.txt", tok, paragraphs=True, drop_last=False)
    list(s)
    assert s.stats()["documents"] == 12


@pytest.mark.parametrize("kw, match", [
    (dict(seq_len=2), "seq_len"),
    (dict(batch_size=0), "batch_size"),
    (dict(rank=2, world_size=2), "rank"),
    (dict(masking="random"), "masking"),
    (dict(padding="left"), "padding"),
    (dict(mask_replace_prob=0.9, random_replace_prob=0.2), "exceeds 1"),
    (dict(mlm_probability=1.5), r"\[0, 1\]"),
    (dict(on_bad_json="ignore"), "on_bad_json"),
    (dict(num_threads=0), "num_threads"),
    (dict(masking="frequency", token_counts=[1, 2, 3]), "one count per id"),
    (dict(masking="frequency", smoothing=float("nan")), "smoothing"),
    (dict(masking="frequency", smoothing=float("inf")), "smoothing"),
])
def test_bad_options(tmp_path, tok, docs, kw, match):
    (tmp_path / "c.txt").write_text("\n".join(docs[:5]))
    with pytest.raises(ValueError, match=match):
        stream(tmp_path / "c.txt", tok, **kw)


def test_too_small_for_world_size(tmp_path, tok, docs):
    (tmp_path / "c.txt").write_text("\n".join(docs[:3]))
    with pytest.raises(ValueError, match="too few sequences"):
        stream(tmp_path / "c.txt", tok, world_size=4, batch_size=8)


def test_fork_child_continues_from_the_same_position(tmp_path, tok, docs):
    (tmp_path / "c.txt").write_text("\n".join(docs * 2))
    s = stream(tmp_path / "c.txt", tok)
    it = iter(s)
    for _ in range(3):
        next(it)  # the producer thread and pool now exist and have batches queued
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's threads are gone; the stream must restart its own
        try:
            out = [next(it)["input_ids"].numpy() for _ in range(3)]
            os.write(w, pickle.dumps(out))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        child = pickle.loads(f.read())
    os.waitpid(pid, 0)
    parent = [next(it)["input_ids"].numpy() for _ in range(3)]
    assert len(child) == 3 and all((a == b).all() for a, b in zip(child, parent))


@pytest.mark.parametrize("name", ["c.txt", "c.txt.gz"])
def test_resume_into_a_file_that_shrank_raises(tmp_path, tok, docs, name):
    """A saved position past a file's end is refused (a plain file used to seek there and end the epoch early)."""
    path = tmp_path / name

    def write(text):
        with (gzip.open(path, "wt") if name.endswith(".gz") else open(path, "w")) as f:
            f.write(text)

    write("\n".join(docs) + "\n")
    s = stream(path, tok, window_batches=1)
    it = iter(s)
    for _ in range(8):
        next(it)
    state = s.state_dict()
    assert state["position"][2] > 1000, "the saved window starts inside the file"
    write("\n".join(docs[:2]) + "\n")
    resumed = stream(path, tok, window_batches=1)
    resumed.load_state_dict(state)
    with pytest.raises(ValueError, match="shorter than the saved position"):
        list(resumed)
