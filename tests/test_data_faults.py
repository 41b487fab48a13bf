"""The data engine under faults: a fork mid-epoch, link cycles, a cache or corpus file truncated
while read, sizes that cannot be allocated, Ctrl-C during long calls, extreme smoothing
(docs/data.md, "Limits and failure behaviour").

Each fault that could kill or hang a process runs in a subprocess, so a regression fails its test
(a signal exit, a timeout) instead of taking pytest down. Each docstring says what main did.
"""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest
import torch

import distilx


@pytest.fixture(scope="module")
def docs(english_lines):
    return [l for l in english_lines[:600] if len(l) > 200]


def python(script: str, *args) -> subprocess.Popen:
    """Start `script` in a fresh interpreter (cold tables, own signal handlers)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """Wait for `proc`; a hang is killed and fails the test."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the subprocess hung for {timeout} s\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}")
    return proc.returncode, out, err


# -- 8: fork while the tables are being built ------------------------------------------------------

FORK_MID_EPOCH = """
    import os, sys, time
    import distilx
    tokenizer, folder = sys.argv[1], sys.argv[2]
    # One document per 256-code-point block (planes 0-2), each between ~8 KB of ASCII: every round of
    # the reader (1 MB) meets ~120 blocks the per-character tables have not built yet.
    filler = "the quick brown fox jumps over the lazy dog " * 90
    blocks = [b for b in range(0x300) if not 0xD8 <= b < 0xE0]
    def char(b):
        return next((chr(b * 256 + o) for o in range(256) if chr(b * 256 + o).isalnum()), chr(b * 256 + 0x41))
    corpus, probe = os.path.join(folder, "blocks.txt"), os.path.join(folder, "probe.txt")
    with open(corpus, "w") as f:
        f.write("\\n".join(f"{filler} {char(b)}{char(b)} {filler}" for b in blocks) + "\\n")
    with open(probe, "w") as f:
        f.write("\\n".join(" ".join(char(b) for b in blocks[i:i + 10]) + " " + filler[:300] for i in range(0, len(blocks), 10)) + "\\n")
    stream = distilx.MaskedLMStream(corpus, tokenizer, batch_size=2, seq_len=64, window_batches=1, prefetch=1, num_threads=2)
    it = iter(stream)
    next(it)  # the reader and tokenizer threads now build tables for the next rounds
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # a fresh stream over text from every block
            n = sum(1 for _ in distilx.MaskedLMStream(probe, tokenizer, batch_size=2, seq_len=64, num_threads=2))
            os._exit(0 if n > 0 else 3)
        children.append(pid)
        time.sleep(0.03)
    deadline = time.time() + 60
    status = []
    for pid in children:
        while True:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status.append(os.waitstatus_to_exitcode(code))
                break
            if time.time() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                status.append("hung")
                break
            time.sleep(0.05)
    print(status)
"""


def test_fork_while_tables_are_built_mid_epoch(tokenizer_json, tmp_path):
    """main: the children hung forever in futex waits (a block's OnceLock left "being built" by a
    parent thread that does not exist in the child) — 4 of 4 runs of this script; now the tables are
    lock-free and the children finish."""
    code, out, err = finish(python(FORK_MID_EPOCH, tokenizer_json, tmp_path), timeout=240)
    assert code == 0, err[-3000:]
    assert out.strip() == "[0, 0]", f"children: {out}"


# -- 9: links ---------------------------------------------------------------------------------------

def test_a_directory_linking_to_itself_is_read_once(tmp_path, tok, docs):
    """main: a link to the directory itself made the stream read its file 41 times (once per level
    of the kernel's 40-link limit). Links are followed once: each file is read once."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\n".join(docs[:40]) + "\n")
    (corpus / "self").symlink_to(".")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b.txt").write_text("\n".join(docs[40:80]) + "\n")
    (corpus / "linked").symlink_to(outside)  # a link to another directory is followed
    s = distilx.MaskedLMStream(corpus, tok, batch_size=4, seq_len=64, drop_last=False)
    assert [os.path.relpath(p, corpus) for p in s._native.files()] == ["a.txt", "linked/b.txt"]
    for _ in s:
        pass
    assert s.stats()["documents"] == 80


def test_two_self_links_do_not_hang_construction(tmp_path, tokenizer_json):
    """main: with two links to the directory itself, construction never finished (2^40 paths)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("one document of a few words\n")
    (corpus / "self").symlink_to(".")
    (corpus / "again").symlink_to(corpus)
    script = """
        import sys, distilx
        s = distilx.MaskedLMStream(sys.argv[1], sys.argv[2])
        print(len(s._native.files()))
    """
    code, out, err = finish(python(script, corpus, tokenizer_json), timeout=60)
    assert code == 0 and out.strip() == "1", err[-2000:]


# -- 10: a cache or corpus file truncated while read ------------------------------------------------

TRUNCATE_WHILE_READ = """
    import os, sys
    import distilx
    tokenizer, path, kind = sys.argv[1:4]
    options = dict(batch_size=32, window_batches=2, prefetch=2)
    if kind == "cache":  # built first from the corpus file given after the kind
        distilx.build_cache(sys.argv[4], tokenizer, path)
        stream = distilx.MaskedLMStream(None, tokenizer, cache=path, **options)
    else:
        stream = distilx.MaskedLMStream(path, tokenizer, **options)
    it = iter(stream)
    for _ in range(5):
        next(it)
    os.truncate(path, os.path.getsize(path) // 3)  # in place, under the reader
    try:
        n = sum(1 for _ in it)
        print("no error after", n, "batches")
    except ValueError as e:
        print("ValueError:", e)
"""


def test_a_cache_truncated_while_read_raises(english_corpus, tokenizer_json, tmp_path):
    """main: the stream died with SIGBUS (reading mapped pages past the new end of the file). Now the
    lost pages are detected and the next batch raises a ValueError naming the file."""
    cache = tmp_path / "corpus.dxc"
    code, out, err = finish(python(TRUNCATE_WHILE_READ, tokenizer_json, cache, "cache", english_corpus[0]), timeout=300)
    assert code == 0, f"exit {code} (-7 is SIGBUS)\n{err[-2000:]}"
    assert out.startswith("ValueError:") and str(cache) in out and "truncated" in out, out


def write_corpus_file(path, lines, kind):
    """`lines` as a text column in many record batches / row groups (so a cut lands mid-file)."""
    table = pa.table({"text": lines})
    if kind == "parquet":
        pq.write_table(table, path, row_group_size=1000)
    else:
        opener = pa.ipc.new_file if kind == "arrow-file" else pa.ipc.new_stream
        with opener(path, table.schema) as w:
            w.write_table(table, max_chunksize=1000)
    return path


@pytest.mark.parametrize("kind", ["arrow-file", "arrow-stream", "parquet"])
def test_a_corpus_file_truncated_while_read_raises(english_corpus, tokenizer_json, tmp_path, kind):
    """main: an Arrow file (memory-mapped) died with SIGBUS, like a cache; a Parquet file (read with
    plain reads) raised, but called itself not a Parquet file. Now both raise a ValueError naming the
    file and saying it was truncated while it was being read."""
    with open(english_corpus[0], encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    path = write_corpus_file(tmp_path / f"corpus.{kind.split('-')[0]}", lines, kind)
    code, out, err = finish(python(TRUNCATE_WHILE_READ, tokenizer_json, path, kind), timeout=300)
    assert code == 0, f"exit {code} (-7 is SIGBUS)\n{err[-2000:]}"
    assert out.startswith("ValueError:") and str(path) in out and "truncated while it was being read" in out, out


FOREIGN_SIGBUS = """
    import mmap, os, signal, sys
    import distilx
    corpus, tokenizer, cache, how = sys.argv[1:5]
    distilx.build_cache(corpus, tokenizer, cache)
    stream = distilx.MaskedLMStream(None, tokenizer, cache=cache)  # installs the SIGBUS handler
    next(iter(stream))
    if how == "kill":
        os.kill(os.getpid(), signal.SIGBUS)
    else:  # a truncated mapping that is not a distilx cache
        path = cache + ".other"
        with open(path, "wb") as f:
            f.write(b"x" * (1 << 20))
        f = open(path, "rb")
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        os.truncate(path, 0)
        print(m[(1 << 20) - 1])
    print("survived")
"""


@pytest.mark.parametrize("how", ["kill", "fault"])
def test_other_sigbus_still_ends_the_process(docs, tokenizer_json, tmp_path, how):
    """The cache's SIGBUS handler handles faults on caches only: a SIGBUS sent to the process, or a
    fault on another truncated mapping, still ends it with SIGBUS as without distilx."""
    (tmp_path / "c.txt").write_text("\n".join(docs) + "\n")
    code, out, err = finish(python(FOREIGN_SIGBUS, tmp_path / "c.txt", tokenizer_json, tmp_path / "c.dxc", how), timeout=300)
    assert code == -signal.SIGBUS and "survived" not in out, (code, out, err[-2000:])


# -- 11: sizes that cannot be allocated --------------------------------------------------------------

SIZES = """
    import resource, sys
    # Far below what the bad sizes ask for: an attempt to allocate them fails at once (an abort on
    # main) instead of filling the machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    import distilx
    corpus, tokenizer, sparse_ids = sys.argv[1:4]
    for case in sys.argv[4:]:
        option, value = case.split("=")
        print("case", case, flush=True)
        try:
            if option == "tokenizer":
                stream = distilx.MaskedLMStream(corpus, sparse_ids)
            else:
                stream = distilx.MaskedLMStream(corpus, tokenizer, **{option: eval(value)})
            next(iter(stream))
            print("accepted", flush=True)
        except ValueError as e:
            print("ValueError:", e, flush=True)
"""

SIZE_CASES = {
    "batch_size=10**7": "batch_size=10000000",
    "window_batches=10**9": "window_batches=1000000000",
    "prefetch=10**9": "prefetch=1000000000",
    "world_size=2**40": "world_size must be at most 65536",
    "num_threads=10**6": "num_threads must be None (one per core) or 1 to 1024",
    "tokenizer=id 4e9": "the id 4000000000",
}


@pytest.fixture(scope="module")
def size_outcomes(tmp_path_factory, tokenizer_json, docs):
    """Each case of SIZE_CASES run in turn in one subprocess: case -> what it printed, or how the
    process ended while the case ran. The tokenizer case uses bert-base-uncased's tokenizer.json with
    one more token, numbered 4,000,000,000."""
    import json
    folder = tmp_path_factory.mktemp("sizes")
    (folder / "c.txt").write_text("\n".join(docs[:40]) + "\n")
    with open(tokenizer_json) as f:
        spec = json.load(f)
    spec["model"]["vocab"]["zzzqqq"] = 4_000_000_000
    (folder / "sparse-ids.json").write_text(json.dumps(spec))
    proc = python(SIZES, folder / "c.txt", tokenizer_json, folder / "sparse-ids.json", *SIZE_CASES)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    outcomes, case = {}, None
    for line in out.splitlines():
        if line.startswith("case "):
            case = line[5:]
        elif case:
            outcomes[case] = line
    if case and case not in outcomes:
        outcomes[case] = f"the process ended with {proc.returncode} (-6: SIGABRT, -9: killed after hanging): {err[-1000:]}"
    return outcomes


@pytest.mark.parametrize("case", SIZE_CASES)
def test_sizes_beyond_the_limits_are_refused(size_outcomes, case):
    """main: "memory allocation of N bytes failed" and SIGABRT (the 4e9 id after 41 s and 16 GB of
    RSS), or thousands of threads for num_threads=10**6. Now a ValueError naming the option."""
    outcome = size_outcomes.get(case, "not reached: an earlier case ended the process")
    assert outcome.startswith("ValueError:") and SIZE_CASES[case] in outcome, outcome


# -- 12: Ctrl-C during long calls, and files that never end ------------------------------------------

LONG_CALLS = """
    import sys
    import distilx
    endless, large, tokenizer = sys.argv[1:4]
    tok, hf = distilx.Tokenizer(tokenizer), distilx.Tokenizer(tokenizer, backend="hf")
    calls = {
        "count_batches": lambda: distilx.MaskedLMStream(endless, tok).count_batches(),
        "build_cache": lambda: distilx.build_cache(endless, tok, endless + ".dxc"),
        "world_size=2": lambda: distilx.MaskedLMStream(endless, tok, world_size=2),
        "frequency counts": lambda: distilx.MaskedLMStream(endless, tok, masking="frequency"),
        "count_tokens": lambda: distilx.data.count_tokens(endless, tok),
        "tokenizing count_batches": lambda: distilx.MaskedLMStream(large, hf).count_batches(),
    }
    for name in sys.argv[4:]:
        print("calling", name, flush=True)
        try:
            calls[name]()
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
"""

LONG_CALL_NAMES = ["count_batches", "build_cache", "world_size=2", "frequency counts", "count_tokens", "tokenizing count_batches"]


@pytest.fixture(scope="module")
def interrupted_calls(tmp_path_factory, english_corpus, tokenizer_json):
    """Each long call of LONG_CALLS started in turn in one subprocess and sent SIGINT 1.5 s in:
    call -> (seconds from the signal to the call's end, how it ended). Corpora: a few documents then
    a 1 TiB line of NUL bytes (a sparse file: no disk used; /dev/zero-like), and ~115 MB of real text
    (the English corpus five times: a tokenization-bound pass)."""
    import queue
    import threading
    folder = tmp_path_factory.mktemp("long")
    endless, large = folder / "endless.txt", folder / "large.txt"
    with open(endless, "wb") as f:
        f.write(b"a few words of text\n" * 100)
        f.truncate(1 << 40)
    with open(english_corpus[0], "rb") as f:
        text = f.read()
    with open(large, "wb") as f:
        for _ in range(5):
            f.write(text)
    proc = python(LONG_CALLS, endless, large, tokenizer_json, *LONG_CALL_NAMES)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l.strip()) for l in proc.stdout], daemon=True).start()
    outcomes = {}
    try:
        for name in LONG_CALL_NAMES:
            assert lines.get(timeout=60) == f"calling {name}"
            time.sleep(1.5)
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            outcome = lines.get(timeout=30)
            outcomes[name] = (time.monotonic() - sent, outcome)
    except queue.Empty:
        pass  # the call that hung has no outcome: its test fails
    finally:
        proc.kill()
        proc.wait()
    outcomes["leftovers"] = [p for p in os.listdir(folder) if "tmp-" in p]
    return outcomes


@pytest.mark.parametrize("call", LONG_CALL_NAMES)
def test_ctrl_c_stops_long_calls(interrupted_calls, call):
    """main: Ctrl-C was ignored until the call finished — the passes ran in one uninterruptible Rust
    call, and nothing stopped the reader inside a long line (here 1 TiB: minutes) or between rounds
    of a tokenizing pass (tens of seconds). Now KeyboardInterrupt within a second or so."""
    assert call in interrupted_calls, f"{call}: no answer 30 s after SIGINT"
    waited, outcome = interrupted_calls[call]
    assert outcome == "KeyboardInterrupt" and waited < 5, f"{call}: {outcome} {waited:.1f} s after SIGINT"
    assert interrupted_calls["leftovers"] == [], "an interrupted build leaves no temporary file"


def test_fifos_and_devices_are_refused(tmp_path, tokenizer_json):
    """main: a FIFO without a writer blocked construction forever in open(); /dev/zero was accepted
    and read as one endless line. Both are refused by name (only regular files are corpus files)."""
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    script = """
        import sys, distilx
        for path in sys.argv[2:]:
            try:
                distilx.MaskedLMStream(path, sys.argv[1])
                print("accepted", path)
            except ValueError as e:
                print("ValueError:", e)
    """
    code, out, err = finish(python(script, tokenizer_json, fifo, "/dev/zero", tmp_path), timeout=60)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3, out + err[-2000:]
    for line, named in zip(lines, [fifo, "/dev/zero", fifo]):  # the last: the FIFO found in a folder
        assert line.startswith("ValueError:") and f"{named} is not a regular file" in line, line


# -- 13: frequency masking with a large smoothing ----------------------------------------------------

@pytest.mark.parametrize("smoothing", [0.7, 100, 300])
def test_frequency_masking_keeps_its_target_count_at_any_smoothing(tmp_path, tok, docs, smoothing):
    """main: count^-smoothing underflowed to 0 for frequent tokens, which then never became targets:
    at smoothing 100 a batch got 257 targets instead of round(0.15 x 2767 eligible) = 415, at 300 only
    44. The weights are now compared in log space."""
    (tmp_path / "c.txt").write_text("\n".join(docs) + "\n")
    s = distilx.MaskedLMStream(tmp_path / "c.txt", tok, masking="frequency", smoothing=smoothing, batch_size=16, seq_len=128)
    special = torch.tensor(tok.special_ids)
    batches = 0
    for batch in s:
        ids, labels = batch["input_ids"], batch["labels"]
        original = torch.where(labels != -100, labels, ids)
        eligible = int(((batch["attention_mask"] == 1) & ~torch.isin(original, special)).sum())
        assert int((labels != -100).sum()) == math.floor(0.15 * eligible + 0.5)
        batches += 1
    assert batches > 5
