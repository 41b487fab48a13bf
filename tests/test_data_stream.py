"""MaskedLMStream: framing vs an independent reference, masking statistics, determinism, epochs,
sharding, resume, cache. Real text (the English corpus) and the real bert-base-uncased tokenizer."""

import gzip
import itertools
import math

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer

import distilx


def originals(batch):
    """The unmasked ids: the label where there is a target, else the input."""
    return torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])


def rows_of(batch):
    ids, att = originals(batch), batch["attention_mask"]
    return [tuple(ids[i][att[i] == 1].tolist()) for i in range(ids.shape[0])]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, english_lines):
    """~600 real documents, plain and gzip."""
    d = tmp_path_factory.mktemp("corpus")
    lines = english_lines[:600]
    (d / "a.txt").write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    with gzip.open(d / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines[300:]) + "\n")
    return d, lines


def make(files, tok, **kw):
    kw.setdefault("batch_size", 8)
    kw.setdefault("seq_len", 64)
    return distilx.MaskedLMStream(files, tok, **kw)


def test_rows_equal_reference_framing(small_corpus, tokenizer_json):
    """[CLS] chunk [SEP] rows, chunks of seq_len-2, min length and [UNK] filters, vs the Python library."""
    d, lines = small_corpus
    ref_tok = HFTokenizer.from_file(str(tokenizer_json))
    ref_tok.no_truncation()
    ref_tok.no_padding()
    want = []
    for enc in ref_tok.encode_batch(lines, add_special_tokens=False):
        ids = enc.ids
        for i in range(0, len(ids), 62):
            row = (101,) + tuple(ids[i:i + 62]) + (102,)
            if len(row) >= 12 and sum(t == 100 for t in row) / len(row) < 0.5:
                want.append(row)
    stream = make(d, tokenizer_json, shuffle=False, drop_last=False)
    got = [r for b in stream for r in rows_of(b)]
    assert got == want
    s = stream.stats()
    assert s["documents"] == len(lines) and s["sequences"] == len(want)
    assert stream.batches_per_epoch == -(-len(want) // 8)


def test_masking_statistics_one_million_tokens(english_corpus, tok):
    special = torch.tensor(tok.special_ids)
    for masking in ("uniform", "frequency", "whole_word"):
        stream = distilx.MaskedLMStream(english_corpus[0], tok, batch_size=64, seq_len=128, masking=masking, seed=3)
        eligible = targets = masked = kept = random = 0
        for batch in stream:
            orig = originals(batch)
            is_special = torch.isin(orig, special)
            real = batch["attention_mask"] == 1
            tgt = batch["labels"] != -100
            assert not (tgt & is_special).any(), "a special token was a target"
            assert not (tgt & ~real).any(), "padding was a target"
            assert (batch["input_ids"][~real] == tok.pad_id).all()
            inp = batch["input_ids"][tgt]
            assert not torch.isin(inp[inp != tok.mask_id], special).any(), "random replacement drew a special id"
            eligible += int((real & ~is_special).sum())
            targets += int(tgt.sum())
            masked += int((inp == tok.mask_id).sum())
            kept += int((inp == batch["labels"][tgt]).sum())
            random += int(((inp != tok.mask_id) & (inp != batch["labels"][tgt])).sum())
            if eligible > 1_000_000:
                break
        assert eligible > 1_000_000
        assert abs(targets / eligible - 0.15) < 0.005, (masking, targets / eligible)
        assert abs(masked / targets - 0.8) < 0.01, (masking, masked / targets)
        assert abs(random / targets - 0.1) < 0.01, (masking, random / targets)
        assert abs(kept / targets - 0.1) < 0.01, (masking, kept / targets)


def test_frequency_masking_prefers_rare_tokens(small_corpus, tokenizer_json):
    d, _ = small_corpus
    stream = make(d, tokenizer_json, masking="frequency", batch_size=16)
    counts = stream.token_counts
    assert counts is not None and counts.shape == (30522,) and counts[1996] > 1000  # "the"
    hit = torch.zeros(30522)
    seen = torch.zeros(30522)
    for b in stream:
        orig, tgt = originals(b), b["labels"] != -100
        seen += torch.bincount(orig[b["attention_mask"] == 1], minlength=30522)
        hit += torch.bincount(orig[tgt], minlength=30522)
    rate = hit / seen.clamp(min=1)
    common = counts >= 2000
    rare = (counts > 0) & (counts <= 5)
    assert rate[torch.from_numpy(rare)].mean() > 3 * rate[torch.from_numpy(common)].mean()


def test_whole_word_masks_whole_words(tok):
    texts = ["unbelievably antidisestablishmentarianism tokenization " * 6] * 40
    words = tok.word_ids(texts[:1])[0]
    import tempfile, os
    with tempfile.TemporaryDirectory() as t:
        p = os.path.join(t, "w.txt")
        open(p, "w").write("\n".join(texts) + "\n")
        stream = distilx.MaskedLMStream(p, tok, seq_len=128, batch_size=8, masking="whole_word", shuffle=False,
                                        mlm_probability=0.3, drop_last=False)
        n_word_masks = 0
        for b in stream:
            for r in range(b["labels"].shape[0]):
                tgt = (b["labels"][r] != -100).tolist()
                # Positions 1..len(words) are the first copy of the text: a word is all in or all out.
                for w in set(words):
                    flags = {tgt[1 + i] for i, x in enumerate(words) if x == w}
                    assert len(flags) == 1
                    n_word_masks += flags.pop()
        assert n_word_masks > 0


def test_determinism_threads_prefetch_and_epochs(small_corpus, tokenizer_json):
    d, _ = small_corpus
    a = list(make(d, tokenizer_json, num_threads=1, prefetch=1))
    b = list(make(d, tokenizer_json, num_threads=2, prefetch=32))
    assert len(a) == len(b) > 10
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    s = make(d, tokenizer_json)
    e0 = list(s)
    assert s.epoch == 1
    e1 = list(s)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(e0, a) for k in x)
    assert not all(torch.equal(x["labels"], y["labels"]) for x, y in zip(e0, e1)), "a new epoch must give new masks"
    # Same rows in both epochs (order and masks change), up to the partial batch drop_last drops.
    r0, r1 = set(r for b in e0 for r in rows_of(b)), set(r for b in e1 for r in rows_of(b))
    assert len(r0 ^ r1) <= 2 * 8 and e0[0]["input_ids"].shape == e1[0]["input_ids"].shape
    s.set_epoch(0)
    again = list(s)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(e0, again) for k in x)
    c = list(make(d, tokenizer_json, seed=1))
    assert not all(torch.equal(x["labels"], y["labels"]) for x, y in zip(a, c))


def test_ranks_are_disjoint_covering_and_equal(tmp_path, tokenizer_json):
    # 300 unique one-row documents: with 3 ranks × batch 2 every row is seen exactly once.
    lines = [f"document number {i} talks about the {w} of the world and other things" for i, w in
             zip(range(300), itertools.cycle(["history", "science", "music", "art", "food"]))]
    p = tmp_path / "docs.txt"
    p.write_text("\n".join(lines) + "\n")
    full = sorted(r for b in make(p, tokenizer_json, batch_size=2) for r in rows_of(b))
    per_rank = []
    for rank in range(3):
        s = make(p, tokenizer_json, batch_size=2, rank=rank, world_size=3)
        batches = list(s)
        assert len(batches) == s.batches_per_epoch == 50
        per_rank.append([r for b in batches for r in rows_of(b)])
    sets = [set(r) for r in per_rank]
    assert all(not (sets[i] & sets[j]) for i in range(3) for j in range(i + 1, 3))
    assert sorted(itertools.chain(*per_rank)) == full
    # From a cache: the same per-rank documents, in a new order each epoch, still disjoint and covering.
    cache = tmp_path / "docs.dxc"
    distilx.build_cache(p, tokenizer_json, cache)
    for rank in range(3):
        s = make(None, tokenizer_json, cache=cache, batch_size=2, rank=rank, world_size=3)
        epochs = [[r for b in s for r in rows_of(b)] for _ in range(2)]
        assert s.epoch == 2 and len(epochs[0]) == len(epochs[1]) == 100
        assert set(epochs[0]) == set(epochs[1]) == sets[rank] and epochs[0] != epochs[1]


def test_ranks_equal_batches_on_uneven_shards(small_corpus, tokenizer_json):
    d, _ = small_corpus
    counts = [len(list(make(d, tokenizer_json, rank=r, world_size=4))) for r in range(4)]
    assert len(set(counts)) == 1 and counts[0] > 0


@pytest.mark.parametrize("options", [
    dict(),
    dict(packing=True),
    dict(padding="dynamic", masking="whole_word"),
    dict(masking="frequency", rank=1, world_size=2),
])
def test_resume_mid_epoch_equals_uninterrupted(small_corpus, tokenizer_json, options):
    d, _ = small_corpus
    kw = dict(window_batches=4, **options)
    full = list(make(d, tokenizer_json, **kw))
    assert len(full) > 12
    s = make(d, tokenizer_json, **kw)
    it = iter(s)
    for _ in range(6):  # mid second window
        next(it)
    state = s.state_dict()
    assert len(str(state)) < 300, "the state must stay small"
    resumed = make(d, tokenizer_json, **kw)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(full) - 6
    assert all(torch.equal(x[k], y[k]) for x, y in zip(rest, full[6:]) for k in x)
    if options.get("padding") == "dynamic":
        assert len({b["input_ids"].shape[1] for b in full}) > 1


def test_resume_state_rejects_other_config(small_corpus, tokenizer_json):
    d, _ = small_corpus
    state = make(d, tokenizer_json).state_dict()
    with pytest.raises(ValueError, match="another configuration"):
        make(d, tokenizer_json, seed=5).load_state_dict(state)


def test_packing_fills_rows(small_corpus, tokenizer_json):
    d, _ = small_corpus
    batches = list(make(d, tokenizer_json, packing=True, shuffle=False))
    att = torch.cat([b["attention_mask"] for b in batches])
    assert att.float().mean() > 0.99  # rows filled to seq_len
    # Concatenated rows (without their [CLS]) are the documents separated by [SEP].
    stream_ids = [t for b in batches for r in rows_of(b) for t in r[1:]]
    assert stream_ids.count(102) >= 500


def test_cache_equals_streaming_layout_and_detects_corruption(small_corpus, tokenizer_json, tmp_path):
    d, lines = small_corpus
    cache = tmp_path / "corpus.dxc"
    info = distilx.build_cache(d, tokenizer_json, cache)
    assert info["documents"] == len(lines)
    raw_rows = sorted(r for b in make(d, tokenizer_json, drop_last=False) for r in rows_of(b))
    cache_rows = sorted(r for b in make(None, tokenizer_json, cache=cache, drop_last=False) for r in rows_of(b))
    assert cache_rows == raw_rows
    cached = make(None, tokenizer_json, cache=cache, window_batches=4)
    a = list(cached)
    assert cached.batches_per_epoch == len(a) == len(list(cached))
    # Resume in cache mode.
    s2 = make(None, tokenizer_json, cache=cache, window_batches=4)
    it = iter(s2)
    for _ in range(5):
        next(it)
    st = s2.state_dict()
    s3 = make(None, tokenizer_json, cache=cache, window_batches=4)
    s3.load_state_dict(st)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(list(s3), a[5:]) for k in x)
    # Equal per-rank counts from the cache, every epoch.
    n = [len(list(make(None, tokenizer_json, cache=cache, rank=r, world_size=3))) for r in range(3)]
    assert len(set(n)) == 1
    # Truncated and corrupted caches are refused.
    data = cache.read_bytes()
    (tmp_path / "trunc.dxc").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        make(None, tokenizer_json, cache=tmp_path / "trunc.dxc")
    flipped = bytearray(data)
    flipped[100] ^= 0xFF
    (tmp_path / "flip.dxc").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="checksum"):
        make(None, tokenizer_json, cache=tmp_path / "flip.dxc")
    (tmp_path / "junk.dxc").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a distilx cache"):
        make(None, tokenizer_json, cache=tmp_path / "junk.dxc")


def test_whole_word_masking_refuses_a_cache_without_word_starts(small_corpus, tokenizer_json, tmp_path):
    """Without the word-start bits every token would read as its own word (silently per-token)."""
    d, _ = small_corpus
    cache = tmp_path / "nowords.dxc"
    # the public build_cache always stores them; the native call can leave them out
    distilx._native.build_cache([str(d / "a.txt")], distilx.Tokenizer(tokenizer_json), str(cache), word_starts=False)
    with pytest.raises(ValueError, match="word_starts"):
        make(None, tokenizer_json, cache=cache, masking="whole_word")
    next(iter(make(None, tokenizer_json, cache=cache, masking="uniform")))  # other modes still work


def test_concurrent_builds_of_one_cache_leave_a_valid_file(small_corpus, tokenizer_json, tmp_path):
    """Ranks (here threads: the build releases the GIL) that each build the same missing cache write
    separate temporary files; the cache left behind is complete and passes its checksum."""
    import threading

    d, lines = small_corpus
    cache = tmp_path / "shared.dxc"
    errors = []

    def build():
        try:
            distilx.build_cache(d, tokenizer_json, cache)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert distilx._native.cache_info(str(cache))["documents"] == len(lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.dxc"], "temporary files left behind"


def test_batches_are_torch_int64_without_copy_overhead(small_corpus, tokenizer_json):
    d, _ = small_corpus
    b = next(iter(make(d, tokenizer_json)))
    for k in ("input_ids", "attention_mask", "labels"):
        assert b[k].dtype == torch.int64 and b[k].shape == (8, 64) and b[k].is_contiguous()


def test_token_counts_equal_the_tokens_the_stream_reads(tmp_path, english_lines, tokenizer_json):
    """Frequency masking's table counts exactly the documents the stream reads. On main the count
    ignored max_document_bytes (data.count_tokens could not pass it; the stream's own pass used the
    16 MiB default), so documents the stream skipped as oversized were counted."""
    p = tmp_path / "c.txt"
    docs = english_lines[:400]
    p.write_text("\n".join(docs) + "\n", encoding="utf-8")
    limit = 300
    kept = [d for d in docs if len(d.encode()) <= limit]
    assert 50 < len(kept) < len(docs) - 50, "the limit must keep some documents and skip others"
    ref = HFTokenizer.from_file(str(tokenizer_json))
    ref.no_truncation()
    ref.no_padding()
    want = np.zeros(30522, dtype=np.uint64)
    for enc in ref.encode_batch(kept, add_special_tokens=False):
        np.add.at(want, enc.ids, 1)
    stream = make(p, tokenizer_json, masking="frequency", max_document_bytes=limit, rank=1, world_size=2)
    assert np.array_equal(stream.token_counts, want)
    assert np.array_equal(distilx.data.count_tokens(p, tokenizer_json, max_document_bytes=limit), want)
    # What the stream then reads: the kept documents only.
    list(stream)
    assert stream.stats()["oversized_lines"] == len(docs) - len(kept)


def test_frequency_masking_target_counts(small_corpus, tok):
    """Targets per batch: ours, round(p x eligible tokens) (the rate of the other modes), by default;
    DistilBERT's ceil(p x all real tokens, [CLS]/[SEP] included) with frequency_targets="all_tokens"
    — the count of its distiller's prepare_batch_mlm. Main had only the first (no such option)."""
    d, _ = small_corpus
    special = torch.tensor(tok.special_ids)
    totals = {}
    for targets in ("eligible", "all_tokens"):
        n_targets = n_eligible = 0
        for b in make(d, tok, masking="frequency", frequency_targets=targets, batch_size=16, seq_len=128):
            real = b["attention_mask"] == 1
            eligible = int((real & ~torch.isin(originals(b), special)).sum())
            got = int((b["labels"] != -100).sum())
            want = (math.floor(0.15 * eligible + 0.5) if targets == "eligible"
                    else min(math.ceil(0.15 * int(real.sum())), eligible))
            assert got == want, (targets, got, want)
            n_targets, n_eligible = n_targets + got, n_eligible + eligible
        totals[targets] = n_targets / n_eligible
    assert abs(totals["eligible"] - 0.15) < 0.001
    assert totals["all_tokens"] > totals["eligible"] * 1.01, totals


def test_stream_options_reach_the_engine_and_bad_ones_are_refused(small_corpus, tok):
    d, _ = small_corpus
    s = make(d, tok, min_seq_len=40, prefetch=2)
    assert (s.options.min_seq_len, s.options.prefetch, s.options.masking) == (40, 2, "uniform")
    assert min(int(m.sum()) for b in s for m in b["attention_mask"]) >= 40
    with pytest.raises(ValueError, match='unknown stream option "min_len"'):
        make(d, tok, min_len=3)
    with pytest.raises(ValueError, match="min_seq_len must be an integer"):
        make(d, tok, min_seq_len="3")
