"""The fast WordPiece path (backend="wordpiece") against the Python `tokenizers` library.

Exactness is the contract: ids (and word ids) must be identical to `tokenizers` for the same
tokenizer.json with truncation and padding off and no special tokens added, on real text, on
generated adversarial strings, and for cased / accent-stripping variants of the tokenizer.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.implementations import BertWordPieceTokenizer

import distilx


def reference(path):
    tok = HFTokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def reference_ids(tok, texts):
    return [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]


def first_mismatch(ours, theirs, texts):
    for text, a, b in zip(texts, ours, theirs):
        if a != b:
            return f"{text!r}\n ours   {a}\n theirs {b}"
    return None


def variant_json(tmp_path, src, name, **normalizer):
    spec = json.loads(src.read_text(encoding="utf-8"))
    spec["normalizer"].update(normalizer)
    out = tmp_path / f"{name}.json"
    out.write_text(json.dumps(spec), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def fast(tokenizer_json):
    tok = distilx.Tokenizer(tokenizer_json, backend="wordpiece")
    assert tok.backend == "wordpiece"
    return tok


@pytest.fixture(scope="module")
def hf(tokenizer_json):
    return reference(tokenizer_json)


def test_auto_picks_the_fast_path_for_bert(tokenizer_json):
    assert distilx.Tokenizer(tokenizer_json).backend == "wordpiece"
    assert distilx.Tokenizer(tokenizer_json, backend="hf").backend == "hf"


def test_real_corpus_ids_identical(english_lines, tokenizer_json, hf):
    texts = english_lines
    assert len(texts) > 1000
    ours = distilx.encode(texts, tokenizer_json, backend="wordpiece")
    assert sum(map(len, ours)) > 100_000
    assert first_mismatch(ours, reference_ids(hf, texts), texts) is None


def test_thread_counts_agree(english_lines, fast):
    texts = english_lines[:500]
    one = fast.encode(texts, num_threads=1)
    assert fast.encode(texts, num_threads=2) == one
    assert fast.encode(texts) == one


def test_word_ids_match_encoding_word_ids(english_lines, fast, hf):
    texts = english_lines[:300] + ["a[MASK]b [CLS]x", "naïve café ΣΊΣΥΦΟΣ 中文 👍🏽", "##ing un##"]
    theirs = [e.word_ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    assert fast.word_ids(texts) == theirs


# Characters that stress every stage: controls, zero-width and odd spaces, combining marks,
# CJK, emoji with joiners and modifiers, case mappings that change length, punctuation runs.
TRICKY = ("\x00\x01\x7f\x85\ufffd\u200b\u200d\ufeff\xad\t\n\r \xa0\u3000\u2028\u1680"
          "\u0301\u0308\u0344\u302e\u1b44\U0001d165\U0001d16d"
          "中文野口日本語한국어\U00020000\U0002f800ｆｕｌｌ"
          "👍🏽👨\u200d👩\u200d👧🇩🇪🏳\ufe0f\u200d🌈"
          "İıßẞςΣǅﬁﬀŉÅÅΩK½²µ"
          "!?.,;:'\"()[]{}<>#$%&*+-/=@\\^_`|~—–“”’«»¿¡…")
tricky_text = st.text(alphabet=st.sampled_from(TRICKY) | st.characters(codec="utf-8") | st.sampled_from("abcXYZ019 "),
                      max_size=60)
pieces = st.sampled_from(["[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MAS", "[mask]", "##", "Straße",
                          "unaffable", "résumé", "e\u0301", "x" * 101, "é" * 120])
adversarial = st.lists(tricky_text | pieces, max_size=6).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(adversarial, min_size=1, max_size=8))
def test_adversarial_strings_identical(texts, fast, hf):
    assert first_mismatch(fast.encode(texts), reference_ids(hf, texts), texts) is None


@pytest.mark.parametrize("flags", [
    dict(lowercase=False, strip_accents=False),
    dict(lowercase=False, strip_accents=True),
    dict(lowercase=True, strip_accents=False),
    dict(clean_text=False, handle_chinese_chars=False),
])
def test_flag_variants_identical(flags, tmp_path, tokenizer_json, english_lines):
    path = variant_json(tmp_path, tokenizer_json, "variant", **flags)
    fast = distilx.Tokenizer(path, backend="wordpiece")
    texts = english_lines[::10][:300] + ["Ünïcödé CAFÉ İstanbul ΣΊΣΥΦΟΣ", "\x00 tab\tzero\u200bwidth 中文字"]
    hf = reference(path)
    assert first_mismatch(fast.encode(texts), reference_ids(hf, texts), texts) is None


@pytest.mark.parametrize("lowercase", [True, False])
def test_vocab_txt_matches_bert_wordpiece_tokenizer(lowercase, minilm_dir, english_lines):
    vocab = minilm_dir / "vocab.txt"
    fast = distilx.Tokenizer(vocab, lowercase=lowercase, backend="wordpiece")
    hf = BertWordPieceTokenizer(str(vocab), lowercase=lowercase)
    texts = english_lines[:300] + ["Hello [MASK] WORLD naïve 中文"]
    theirs = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    assert first_mismatch(fast.encode(texts), theirs, texts) is None


def test_non_bert_tokenizer_falls_back(tmp_path, tokenizer_json):
    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    spec["normalizer"] = {"type": "Lowercase"}
    path = tmp_path / "lowercase_only.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    assert distilx.Tokenizer(path).backend == "hf"
    with pytest.raises(ValueError, match="wordpiece"):
        distilx.Tokenizer(path, backend="wordpiece")
