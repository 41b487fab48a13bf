"""A checkpoint resumed on another number of processes (distilx.resharding), at the stream level: the rest
of the epoch is the old run's batches — the same rows, documents and masks, byte for byte — each dealt to
exactly one new rank, none skipped; the next epoch is sharded over the new number. Counted from each
stream's own record of what a batch was made of (`last_origin`: row starts, example indices), for the
masked-LM stream (Rust) and the classification batches (which the question-answering task uses too). (The
same with real training processes and real signals: test_cluster.py.)"""

import collections
import json
import warnings

import numpy as np
import pytest

from distilx.data import MaskedLMStream
from distilx.resharding import Redistributed, batches_left, resume_stream
from distilx.tasks.labelled_data import ClassificationBatches, LabelledExamples, LabelSet


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, english_corpus):
    """400 real English documents."""
    path = tmp_path_factory.mktemp("corpus") / "docs.txt"
    with open(english_corpus[0], encoding="utf-8") as f:
        lines = [line for _, line in zip(range(400), f)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def masked_lm_factory(corpus, tok, **extra):
    """A factory of MaskedLMStream(rank, world) over the corpus."""
    options = {"seq_len": 32, "batch_size": 4, "masking": "uniform", "seed": 3, "num_threads": 1, **extra}
    counts = MaskedLMStream(str(corpus), tok, **options).token_counts  # counted once for every world size

    def make(rank, world):
        return MaskedLMStream(str(corpus), tok, token_counts=counts, rank=rank, world_size=world, **options)
    return make


@pytest.fixture(scope="module")
def masked_lm(corpus, tok):
    return masked_lm_factory(corpus, tok)


@pytest.fixture(scope="module")
def classification(tmp_path_factory, tokenizer_json):
    """A factory of ClassificationBatches(rank, world) over 103 real labelled examples."""
    from distilx import assets

    folder = tmp_path_factory.mktemp("labelled")
    src = assets.kernel_doc_classification()["train"]
    with open(src, encoding="utf-8") as f:
        records = [json.loads(line) for _, line in zip(range(103), f)]
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    labels = LabelSet(tuple(sorted({r["label"] for r in records})))
    examples = LabelledExamples([path], tokenizer_json, text_fields=["text"], label_field="label", labels=labels,
                                seq_len=48)

    def make(rank, world):
        return ClassificationBatches(examples, batch_size=4, seed=5, rank=rank, world_size=world)
    return make


@pytest.fixture(scope="module")
def question_answering(tmp_path_factory):
    """A factory of the question-answering task's batches (ClassificationBatches over QA windows) of real
    Wikipedia text: the task inherits the protocol."""
    from distilx import assets
    from distilx.tasks.qa_records import read_qa_records
    from distilx.tasks.qa_windows import QAWindows
    from qa_helpers import span_records, wiki_texts, write_jsonl

    path = write_jsonl(tmp_path_factory.mktemp("qa") / "train.jsonl", span_records(wiki_texts(12), n_per_text=3))
    windows = QAWindows(read_qa_records([path]), assets.minilm_dir(), seq_len=96, doc_stride=32, max_query_len=40)

    def make(rank, world):
        return ClassificationBatches(windows, batch_size=2, seed=5, rank=rank, world_size=world)
    return make


@pytest.fixture(scope="module", params=["masked-lm", "masked-lm frequency packed", "classification",
                                        "question-answering"])
def kind_and_factory(request, corpus, tok, masked_lm, classification):
    if request.param == "masked-lm":
        return request.param, masked_lm
    if request.param == "masked-lm frequency packed":
        return request.param, masked_lm_factory(corpus, tok, masking="frequency", packing=True)
    return request.param, request.getfixturevalue(request.param.replace("-", "_"))


def origin(stream):
    return tuple(np.asarray(stream.last_origin).reshape(-1).tolist())


def content(batch):
    return tuple(tuple(v.reshape(-1).tolist()) for _, v in sorted(batch.items()))


def epoch_of(make, world):
    """An uninterrupted epoch of `world` ranks: {origin: content} of every batch."""
    out = {}
    for rank in range(world):
        stream = make(rank, world)
        for batch in stream:
            out[origin(stream)] = content(batch)
    return out


def take(streams, iterators, n, used):
    for stream, it in zip(streams, iterators):
        for _ in range(n):
            batch = next(it)
            used.append((origin(stream), content(batch)))


def rest_of_epoch(streams, used):
    """Each new rank's batches until its epoch ends; returns how many each took."""
    counts = []
    for stream in streams:
        n = 0
        for batch in stream:
            used.append((origin(stream), content(batch)))
            n += 1
        counts.append(n)
    return counts


def resumed(make, states, world):
    streams, notes = [], []
    for rank in range(world):
        stream, note = resume_stream(make(rank, world), states, rank, world)
        streams.append(stream)
        notes.append(note)
    return streams, notes[0]


@pytest.mark.parametrize("old,new,done", [(2, 1, 3), (1, 2, 5), (4, 2, 2), (2, 3, 4), (3, 2, 1)])
def test_the_rest_of_the_epoch_is_dealt_once_to_the_new_processes(kind_and_factory, old, new, done):
    kind, make = kind_and_factory
    full = epoch_of(make, old)
    streams = [make(r, old) for r in range(old)]
    used = []
    take(streams, [iter(s) for s in streams], done, used)
    states = [s.state_dict() for s in streams]
    news, note = resumed(make, states, new)
    assert all(isinstance(s, Redistributed) for s in news)
    assert f"written by {old} process" in note and "each batch once, none skipped" in note
    left = [batches_left(s, 1) for s in news]
    counts = rest_of_epoch(news, used)
    assert left == counts, "batches_left (an epoch-counted run's length) is what each rank then takes"
    assert max(counts) - min(counts) <= 1
    seen = collections.Counter(o for o, _ in used)
    assert max(seen.values()) == 1, "a batch used twice"
    assert set(seen) == set(full), "the old run's epoch, every batch of it"
    assert all(full[o] == c for o, c in used), "each batch exactly the old run's: rows, order and masks"
    if kind.startswith("masked-lm"):  # every document of the epoch, from the row starts (document index, token offset)
        docs = {o[i] for o in seen for i in range(0, len(o), 2)}
        assert docs == {o[i] for o in full for i in range(0, len(o), 2)}
    # the next epoch: the new number of processes' own shards
    assert [s.epoch for s in news] == [1] * new
    after = {}
    for s in news:
        for batch in s:
            after[origin(s)] = content(batch)
    reference = {}
    for rank in range(new):
        s = make(rank, new)
        s.set_epoch(1)
        for batch in s:
            reference[origin(s)] = content(batch)
    assert after == reference


def test_a_change_in_the_middle_of_a_dealt_remainder_continues_it(classification, masked_lm):
    """2 processes -> 3 (mid-epoch) -> 1 (in the remainder): still the 2-process epoch, each batch once."""
    for make in (classification, masked_lm):
        full = epoch_of(make, 2)
        streams = [make(r, 2) for r in range(2)]
        used = []
        take(streams, [iter(s) for s in streams], 3, used)
        news, _ = resumed(make, [s.state_dict() for s in streams], 3)
        take(news, [iter(s) for s in news], 2, used)
        last, note = resumed(make, [s.state_dict() for s in news], 1)
        assert "from 12 on" in note  # 6 batches before the first change, 6 dealt to 3 processes
        rest_of_epoch(last, used)
        assert sorted(o for o, _ in used) == sorted(full)
        assert all(full[o] == c for o, c in used)


def test_the_same_world_size_resumes_each_rank_exactly(masked_lm):
    """Also within a dealt remainder: each rank continues its own share."""
    streams = [masked_lm(r, 2) for r in range(2)]
    take(streams, [iter(s) for s in streams], 2, [])
    news, _ = resumed(masked_lm, [s.state_dict() for s in streams], 3)
    its = [iter(s) for s in news]
    take(news, its, 1, [])
    states = [s.state_dict() for s in news]
    expected = []
    rest_of_epoch(news, expected)
    again, note = resumed(masked_lm, states, 3)
    assert note is None
    got = []
    rest_of_epoch(again, got)
    assert got == expected


def test_places_out_of_lock_step_continue_at_the_next_epoch_with_a_warning(classification):
    streams = [classification(r, 2) for r in range(2)]
    its = [iter(s) for s in streams]
    next(its[0]), next(its[0]), next(its[1])  # rank 0 two batches, rank 1 one: no single place
    with pytest.warns(UserWarning, match="stand at different places of their epoch.*continuing at the start of "
                                         "epoch 1"):
        news, note = resumed(classification, [s.state_dict() for s in streams], 1)
    assert not isinstance(news[0], Redistributed) and news[0].epoch == 1


def test_an_epoch_boundary_needs_no_dealing(classification):
    streams = [classification(r, 2) for r in range(2)]
    for s in streams:
        for _ in s:
            pass
    news, note = resumed(classification, [s.state_dict() for s in streams], 1)
    assert "epoch 1 is sharded over 1 process" in note and news[0].epoch == 1
    assert not isinstance(news[0], Redistributed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed(classification, [s.state_dict() for s in streams], 3)
