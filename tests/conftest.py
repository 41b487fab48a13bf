"""Shared fixtures: the real assets that packages ship (no mocks, no downloads).

TRITON_INTERPRET is decided here, before any test imports a Triton kernel: with no CUDA device
the kernels run on the CPU through Triton's interpreter (small shapes only).
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from distilx import assets  # noqa: E402  (after TRITON_INTERPRET is set)


def has_cuda() -> bool:
    return torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"


@pytest.fixture(scope="session")
def minilm_dir():
    return assets.minilm_dir()


@pytest.fixture(scope="session")
def tokenizer_json():
    """bert-base-uncased tokenizer.json (it carries truncation/padding to 128: the engine must switch them off)."""
    return assets.minilm_tokenizer_json()


@pytest.fixture(scope="module")
def tok(tokenizer_json):
    """The bert-base-uncased distilx.Tokenizer, loaded once per test module (building the fast WordPiece
    tables takes seconds); per module, not per session, so a module's fork tests meet tables that only
    that module has warmed."""
    import distilx

    return distilx.Tokenizer(tokenizer_json)


@pytest.fixture(scope="session")
def rxnfp_dir():
    return assets.rxnfp_dir()


@pytest.fixture(scope="session")
def english_corpus():
    """(train.txt, heldout.txt) of the default English corpus (Wikipedia summaries + kernel docs)."""
    return assets.english_corpus()


@pytest.fixture(scope="session")
def english_lines(english_corpus):
    """Real English documents: every 7th line of the training file (a few thousand documents)."""
    with open(english_corpus[0], encoding="utf-8") as f:
        return [line.rstrip("\n") for i, line in enumerate(f) if i % 7 == 0 and line.strip()]


@pytest.fixture(scope="session")
def sample_tokenizers(tmp_path_factory):
    """{style: folder} of tokenizers trained now by the `tokenizers` library on the multilingual
    corpus: byte-level BPE ("roberta", "modernbert") and Unigram ("xlmr", "deberta") — see
    distilx.sample_tokenizers. Trained once per session (a few seconds)."""
    from distilx.sample_tokenizers import train_sample_tokenizers
    return train_sample_tokenizers(tmp_path_factory.mktemp("sample-tokenizers"))


@pytest.fixture(scope="session")
def multilingual_texts():
    """Real documents in seven languages (en, fr, es, zh, ja, ko, it) the sample tokenizers were
    not trained on: every 5th of the held-back half (a few thousand)."""
    from distilx.sample_tokenizers import training_and_check_texts
    return training_and_check_texts()[1][::5]


@pytest.fixture(scope="session")
def tiny_run_inputs(tmp_path_factory):
    """(teacher folder, train file, held-out file) for short real runs: the tiny real-vocabulary
    teacher and a slice of the English corpus (tests/pipeline_helpers.py). Tests must not modify them."""
    from pipeline_helpers import corpus_slice, make_tiny_teacher

    root = tmp_path_factory.mktemp("tiny-run-inputs")
    teacher = make_tiny_teacher(root / "teacher")
    train_file, heldout_file = corpus_slice(root)
    return teacher, train_file, heldout_file
