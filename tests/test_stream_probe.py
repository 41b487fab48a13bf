"""The data engine under hostile use (issue 18 rows 1 and 4, and a dangling link in a corpus folder), through
the Python API on real text and the real bert-base-uncased tokenizer."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from distilx import MaskedLMStream
from distilx.data import count_tokens

HANG_SCRIPT = textwrap.dedent('''
    import _thread, sys, threading, time
    import datasets
    from distilx import MaskedLMStream

    lines = [l for l in open(sys.argv[1], encoding="utf-8").read().splitlines() if len(l) > 200][:60]
    reached, blocked = threading.Event(), threading.Event()  # `blocked` is never set: no more data comes

    def rows():
        yield from ({"text": t} for t in lines)
        reached.set()
        blocked.wait()

    def ctrl_c():  # once the engine's reader thread is blocked inside the generator
        reached.wait()
        time.sleep(0.5)
        _thread.interrupt_main()

    stream = MaskedLMStream(datasets.IterableDataset.from_generator(rows), sys.argv[2], seq_len=32, batch_size=4)
    threading.Thread(target=ctrl_c, daemon=True).start()
    try:
        for _ in stream:
            pass
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    start = time.monotonic()
    del stream
    print(f"blocked-in-generator {reached.is_set()} drop {time.monotonic() - start:.2f}", flush=True)
''')


def test_dropping_a_stream_fed_by_a_blocked_generator_after_ctrl_c_returns(english_corpus, tokenizer_json):
    """Row 1: after Ctrl-C, dropping the stream (and the interpreter's exit) waited for the generator forever."""
    proc = subprocess.run([sys.executable, "-c", HANG_SCRIPT, str(english_corpus[0]), str(tokenizer_json)],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    interrupted, result = proc.stdout.splitlines()
    words = result.split()
    assert interrupted == "interrupted" and words[1] == "True" and float(words[3]) < 5.0, proc.stdout


@pytest.mark.parametrize("smoothing", [0.7, 1e300, 1e308, -1e308])
def test_frequency_masking_keeps_its_target_count_for_any_finite_smoothing(english_lines, tok, tmp_path, smoothing):
    """Row 4: smoothing=1e308 overflowed smoothing x ln(count) to -inf and dropped those tokens from the draw
    (14 targets a batch where round(0.15 x eligible) = 36)."""
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(english_lines[:200]) + "\n", encoding="utf-8")
    stream = MaskedLMStream(str(path), tok, masking="frequency", smoothing=smoothing, seq_len=64, batch_size=8,
                            token_counts=count_tokens(str(path), tok))
    special = set(tok.special_ids)
    for batch, _ in zip(stream, range(5)):
        labels, real = batch["labels"].numpy(), batch["attention_mask"].numpy() == 1
        original = np.where(labels != -100, labels, batch["input_ids"].numpy())  # targets may be [MASK]ed
        eligible = sum(1 for i in original[real].tolist() if i not in special)
        assert int((labels != -100).sum()) == round(0.15 * eligible)


def test_a_dangling_link_in_a_corpus_folder_is_named(tmp_path, tok, english_lines):
    """Also seen, decided: a link whose target is gone is still an error (a corpus file is missing), now one
    that says so and names the target, instead of a bare 'no such file or directory'."""
    (tmp_path / "a.txt").write_text("\n".join(english_lines[:50]) + "\n", encoding="utf-8")
    os.symlink(tmp_path / "moved-away.txt", tmp_path / "b.txt")
    with pytest.raises(ValueError, match=r"b.txt is a symbolic link to .*moved-away.txt, which does not exist: fix or "
                                         "remove the link"):
        MaskedLMStream(str(tmp_path), tok, seq_len=32, batch_size=4)
