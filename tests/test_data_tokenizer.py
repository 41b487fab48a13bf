"""The engine's ids equal the Python `tokenizers` library's, on real text and hard strings."""

import json

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import BertWordPieceTokenizer

import distilx

HARD = [
    "Héllo, wörld! Ça va? naïve café résumé Ångström",
    "東京は日本の首都です。北京 上海 서울 한국어",
    "emoji 🙂👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "control\x00chars\x07and\ttabs\r\nnew\u200blines\u00ad soft hyphen",
    "a" * 150 + " " + "pneumonoultramicroscopicsilicovolcanoconiosis" * 4,
    "[CLS] literal [SEP] and [MASK] tokens [UNK] [PAD]",
    "   leading and trailing spaces   ",
    "",
    "Ünïcödé ΑΒΓ αβγ Привет мир עברית العربية हिन्दी ไทย",
    "$100.00 (approx.) — e.g., 3×4=12; x² ≤ y³ … «quotes» ‘single’",
]


def reference(tokenizer_json):
    tok = HFTokenizer.from_file(str(tokenizer_json))
    tok.no_truncation()
    tok.no_padding()
    return tok


@pytest.mark.parametrize("backend", ["auto", "hf"])
def test_ids_match_tokenizers_library_on_real_text(tokenizer_json, english_lines, backend):
    texts = english_lines[:3000] + HARD
    ref = [e.ids for e in reference(tokenizer_json).encode_batch(texts, add_special_tokens=False)]
    ours = distilx.encode(texts, tokenizer_json, backend=backend)
    mismatches = [i for i, (a, b) in enumerate(zip(ours, ref)) if a != b]
    assert len(ours) == len(ref) and not mismatches, f"first mismatch: {texts[mismatches[0]][:200]!r}"
    # Truncation to 128 that the file carries is off: long documents keep all their tokens.
    assert max(len(x) for x in ours) > 128


def test_vocab_txt_matches_bert_wordpiece(minilm_dir, english_lines):
    texts = english_lines[:1000] + HARD
    ref_tok = BertWordPieceTokenizer(str(minilm_dir / "vocab.txt"), lowercase=True)
    ref = [e.ids for e in ref_tok.encode_batch(texts, add_special_tokens=False)]
    for backend in ("auto", "hf"):
        tok = distilx.Tokenizer(minilm_dir / "vocab.txt", lowercase=True, backend=backend)
        assert tok.encode(texts) == ref, backend


def test_cased_vocab_txt(rxnfp_dir):
    texts = ["CC(=O)O.OCC>>CC(=O)OCC", "c1ccccc1Br.[Na+].[OH-]>>c1ccccc1O", "Cl Br [nH] C@@H"]
    ref = BertWordPieceTokenizer(str(rxnfp_dir / "vocab.txt"), lowercase=False)
    ours = distilx.Tokenizer(rxnfp_dir, lowercase=False, backend="hf")
    assert ours.encode(texts) == [e.ids for e in ref.encode_batch(texts, add_special_tokens=False)]
    assert ours.vocab_size == 591


def test_tokenizer_facts(tokenizer_json):
    tok = distilx.Tokenizer(tokenizer_json)
    ref = reference(tokenizer_json)
    for name in ("cls", "sep", "pad", "mask", "unk"):
        assert getattr(tok, f"{name}_id") == ref.token_to_id(f"[{name.upper()}]")
    assert tok.vocab_size == ref.get_vocab_size()
    assert set(tok.special_ids) >= {tok.cls_id, tok.sep_id, tok.pad_id, tok.mask_id, tok.unk_id}
    assert tok.backend in ("wordpiece", "hf")
    assert tok.token_to_id("hello") == ref.token_to_id("hello")
    assert tok.token_to_id("no-such-token-xyz") is None
    # A directory works and picks its tokenizer.json.
    assert distilx.Tokenizer(tokenizer_json.parent).encode(["hello world"]) == tok.encode(["hello world"])


def test_bad_tokenizers(tmp_path, tokenizer_json):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{ this is not json")
    with pytest.raises(ValueError, match="does not parse"):
        distilx.Tokenizer(bad)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\nhello\nworld\n")
    with pytest.raises(ValueError, match=r"\[CLS\].*\[MASK\]|lacks"):
        distilx.Tokenizer(vocab)
    with pytest.raises(FileNotFoundError):
        distilx.Tokenizer(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="backend"):
        distilx.Tokenizer(tokenizer_json, backend="nope")
    # A tokenizer.json that is valid JSON but a BPE without BERT's special tokens.
    bpe = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                     "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}
    (tmp_path / "bpe.json").write_text(json.dumps(bpe))
    with pytest.raises(ValueError, match="lacks"):
        distilx.Tokenizer(tmp_path / "bpe.json")


def test_encode_api(tokenizer_json):
    with pytest.raises(TypeError, match="list of texts"):
        distilx.encode("a single string", tokenizer_json)
    tok = distilx.Tokenizer(tokenizer_json)
    texts = ["one", "two words", ""]
    assert distilx.encode(texts, tok) == tok.encode(texts) == distilx.encode(texts, str(tokenizer_json), num_threads=1)
    assert tok.encode([]) == []


@pytest.mark.parametrize("backend", ["auto", "hf"])
def test_extra_special_added_tokens_are_special_with_either_backend(tokenizer_json, tmp_path, backend):
    """A special added token beyond the five BERT ones is never a masking target, whichever backend encodes."""
    spec = json.loads(open(tokenizer_json, encoding="utf-8").read())
    new_id = len(spec["model"]["vocab"])
    spec["added_tokens"].append({"id": new_id, "content": "[ENT]", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": True})
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    tok = distilx.Tokenizer(path, backend=backend)
    assert tok.backend == ("wordpiece" if backend == "auto" else "hf")
    assert new_id in tok.special_ids and tok.vocab_size == new_id + 1
    assert new_id in distilx.encode(["an [ENT] here"], tok)[0]


def test_vocab_txt_with_repeated_and_padded_lines_reads_like_the_library(minilm_dir, tmp_path):
    """A repeated token keeps its last line and trailing whitespace is trimmed, as in WordPiece.read_file."""
    lines = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    lines[1000] = lines[2000]  # "the" twice: the library keeps the later id
    lines[1001] = lines[1001] + "  "
    lines[103] = "[MASK] "  # a special token with trailing whitespace
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    texts = [f"{lines[2000]} {lines[1001].strip()} [MASK] and more words", "plain text here"]
    ref_tok = BertWordPieceTokenizer(str(path), lowercase=True)
    ref = [e.ids for e in ref_tok.encode_batch(texts, add_special_tokens=False)]
    assert 2000 in ref[0] and 1000 not in ref[0]
    for backend in ("auto", "hf"):
        tok = distilx.Tokenizer(path, lowercase=True, backend=backend)
        assert tok.encode(texts) == ref, backend
        assert tok.mask_id == ref_tok.token_to_id("[MASK]") == 103, backend
        assert tok.token_to_id(lines[2000]) == 2000, backend
