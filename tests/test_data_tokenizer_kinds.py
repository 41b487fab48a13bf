"""The engine with each kind of tokenizer masked-LM encoders use: byte-level BPE (RoBERTa,
ModernBERT styles), SentencePiece Unigram (XLM-R, DeBERTa-v3 styles), trained now by the `tokenizers`
library on real multilingual text, and BERT's WordPiece (bert-base-uncased). Checked against the
library: ids, framing, special tokens; masking: specials never targets, whole words together."""

import json

import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders

import distilx

from test_data_tokenizer import HARD

STYLES = ("roberta", "modernbert", "xlmr", "deberta")
KINDS = STYLES + ("wordpiece",)


@pytest.fixture(scope="module")
def tokenizer_files(sample_tokenizers, minilm_dir):
    """kind -> folder of its tokenizer.json (+ tokenizer_config.json)."""
    return {**sample_tokenizers, "wordpiece": minilm_dir}


def library(folder):
    tok = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def declared_specials(folder):
    """role -> token, as the tokenizer_config.json beside the tokenizer names them."""
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    out = {}
    for role in ("cls", "sep", "pad", "mask", "unk"):
        value = config.get(f"{role}_token")
        out[role] = value["content"] if isinstance(value, dict) else value
    return out


def originals(batch):
    """The unmasked ids: the label where there is a target, else the input."""
    return torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])


def corpus(tmp_path, texts, name="c.txt"):
    path = tmp_path / name
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def library_rows(ref, texts, seq_len, unk_id, min_len=12, max_unk=0.5):
    """Chunked rows as the library frames them: each chunk of a document's ids framed by the
    library's own single-sequence template (read off `encode(..., add_special_tokens=True)`)."""
    rows = []
    for framed, bare in zip(ref.encode_batch(texts), ref.encode_batch(texts, add_special_tokens=False)):
        if not bare.ids:
            continue
        at = next(i for i in range(len(framed.ids)) if framed.ids[i:i + len(bare.ids)] == bare.ids)
        prefix, suffix = framed.ids[:at], framed.ids[at + len(bare.ids):]
        body = seq_len - len(prefix) - len(suffix)
        for i in range(0, len(bare.ids), body):
            row = tuple(prefix + bare.ids[i:i + body] + suffix)
            if len(row) >= min_len and sum(t == unk_id for t in row) / len(row) < max_unk:
                rows.append(row)
    return rows


@pytest.mark.parametrize("kind", KINDS)
def test_ids_equal_the_tokenizers_library_on_multilingual_text(tokenizer_files, multilingual_texts, kind):
    texts = multilingual_texts + HARD
    ref = [e.ids for e in library(tokenizer_files[kind]).encode_batch(texts, add_special_tokens=False)]
    tok = distilx.Tokenizer(tokenizer_files[kind])
    assert tok.backend == ("wordpiece" if kind == "wordpiece" else "hf")
    ours = tok.encode(texts)
    mismatches = [i for i, (a, b) in enumerate(zip(ours, ref)) if a != b]
    assert len(ours) == len(ref) and not mismatches, f"{len(mismatches)} differ, first: {texts[mismatches[0]][:200]!r}"
    assert sum(map(len, ours)) > 100_000


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_are_the_declared_ones(tokenizer_files, kind):
    folder = tokenizer_files[kind]
    ref, tok = library(folder), distilx.Tokenizer(folder)
    names = declared_specials(folder)
    assert tok.special_tokens == {role: (name, ref.token_to_id(name)) for role, name in names.items()}
    assert (tok.cls_id, tok.sep_id, tok.pad_id, tok.mask_id, tok.unk_id) == tuple(
        ref.token_to_id(names[r]) for r in ("cls", "sep", "pad", "mask", "unk"))
    added = sorted(i for i, t in ref.get_added_tokens_decoder().items() if t.special)
    assert tok.special_ids == added
    # The library's own framing of a sequence: (prefix, suffix) around its ids.
    framed, bare = ref.encode("word"), ref.encode("word", add_special_tokens=False)
    assert framed.ids == tok.framing[0] + bare.ids + tok.framing[1]
    assert tok.framing == ([tok.cls_id], [tok.sep_id])
    assert tok.word_rule == {"roberta": "byte-level", "modernbert": "byte-level", "xlmr": "metaspace",
                             "deberta": "metaspace", "wordpiece": "pre-tokenizer"}[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_stream_rows_equal_the_library_framing(tokenizer_files, multilingual_texts, tmp_path, kind):
    """Chunked rows (prefix, chunk, suffix; filters) and packed rows, vs the library's own framing."""
    folder = tokenizer_files[kind]
    ref, tok = library(folder), distilx.Tokenizer(folder)
    texts = multilingual_texts[::4]
    path = corpus(tmp_path, texts)
    want = library_rows(ref, texts, 64, ref.token_to_id(declared_specials(folder)["unk"]))
    stream = distilx.MaskedLMStream(path, tok, seq_len=64, batch_size=16, mlm_probability=0.0, shuffle=False,
                                    drop_last=False)
    got = [tuple(ids[att == 1].tolist()) for b in stream for ids, att in zip(b["input_ids"], b["attention_mask"])]
    assert got == want
    assert all((b["input_ids"][b["attention_mask"] == 0] == tok.pad_id).all() for b in stream)
    # Packing: prefix, then documents each followed by the suffix, across rows.
    packed = distilx.MaskedLMStream(path, tok, seq_len=64, batch_size=16, mlm_probability=0.0, shuffle=False,
                                    drop_last=False, packing=True, min_seq_len=1, max_unk_ratio=1.0)
    prefix, suffix = tok.framing
    rows = [ids[att == 1].tolist() for b in packed for ids, att in zip(b["input_ids"], b["attention_mask"])]
    assert all(r[:len(prefix)] == prefix for r in rows)
    flat = [t for r in rows for t in r[len(prefix):]]
    assert flat == [t for e in ref.encode_batch(texts, add_special_tokens=False) if e.ids for t in e.ids + suffix]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("masking", ["uniform", "frequency", "whole_word"])
def test_special_tokens_are_never_masked(tokenizer_files, multilingual_texts, tmp_path, kind, masking):
    """Every eligible token a target (mlm_probability=1), half of them random ids: no special id is
    ever a target nor drawn, literal special tokens written in the text included."""
    folder = tokenizer_files[kind]
    tok = distilx.Tokenizer(folder)
    specials = list(declared_specials(folder).values())
    texts = [f"{t[:200]} {specials[i % 5]} more text {specials[(i + 2) % 5]}" for i, t in enumerate(multilingual_texts[:400])]
    stream = distilx.MaskedLMStream(corpus(tmp_path, texts), tok, seq_len=64, batch_size=16, masking=masking,
                                    mlm_probability=1.0, mask_replace_prob=0.5, random_replace_prob=0.5, drop_last=False)
    special = torch.tensor(tok.special_ids)
    written = targets = drawn = 0
    for b in stream:
        orig, real, tgt = originals(b), b["attention_mask"] == 1, b["labels"] != -100
        is_special = torch.isin(orig, special)
        assert not (tgt & is_special).any(), "a special token was a target"
        assert not (tgt & ~real).any(), "padding was a target"
        replaced = b["input_ids"][tgt & (b["input_ids"] != tok.mask_id)]
        assert not torch.isin(replaced, special).any(), "a random replacement drew a special id"
        # Every row's special tokens: the framing, and the ones written in the text (not masked either).
        written += int((is_special & real).sum()) - 2 * orig.shape[0]
        targets += int(tgt.sum())
        drawn += int(replaced.numel())
    assert written > 300 and drawn > 1000
    assert targets > 10_000


def word_starts(kind, ref, ids, special):
    """Whether each token begins a word, from the token strings of the `tokenizers` library: WordPiece
    words are a token and its `##` continuations; byte-level and Metaspace words begin at a token
    whose text (decoded by the library's decoder / `▁` as a space) begins with whitespace, unless the
    token before is all whitespace. A special token is no word; after one a word begins."""
    starts, prev_space, prev_special = [], False, True
    for i in ids:
        if i in special:
            starts.append(None)
            prev_special = True
            continue
        token = ref.id_to_token(i)
        if kind == "wordpiece":
            begins, only = not token.startswith("##"), False
        else:
            text = decoders.ByteLevel().decode([token]) if kind in ("roberta", "modernbert") else token.replace("▁", " ")
            begins, only = text[:1].isspace(), text.isspace()
        starts.append(prev_special or (begins and not prev_space))
        prev_space, prev_special = kind != "wordpiece" and only, False
    return starts


@pytest.mark.parametrize("kind,backend", [(k, "auto") for k in KINDS] + [("wordpiece", "hf")])
def test_whole_word_masking_statistics(tokenizer_files, multilingual_texts, tmp_path, kind, backend):
    """>= 100k tokens: every token of a chosen word is masked and no other; words are chosen at
    mlm_probability, each independently of the word before it (no coarser grouping); specials never."""
    folder = tokenizer_files[kind]
    ref, tok = library(folder), distilx.Tokenizer(folder, backend=backend)
    special = set(tok.special_ids)
    stream = distilx.MaskedLMStream(corpus(tmp_path, multilingual_texts), tok, seq_len=128, batch_size=32,
                                    masking="whole_word", mlm_probability=0.15, seed=5, drop_last=False)
    tokens = words = chosen = multi_token_words = after_chosen = both_chosen = 0
    for b in stream:
        for orig, att, labels in zip(originals(b), b["attention_mask"], b["labels"]):
            ids, tgt = orig[att == 1].tolist(), (labels[att == 1] != -100).tolist()
            starts = word_starts(kind, ref, ids, special)
            word, previous = [], None  # the word being read, and whether the one before it was chosen
            for k, (s, t) in enumerate(zip(starts + [True], tgt + [False])):
                if s is not False and word:  # the word in `word` ended: all its tokens in or all out
                    flags = {tgt[j] for j in word}
                    assert len(flags) == 1, f"a word was split: {[ref.id_to_token(ids[j]) for j in word]}"
                    this = flags.pop()
                    words += 1
                    chosen += this
                    multi_token_words += len(word) > 1
                    if previous:
                        after_chosen += 1
                        both_chosen += this
                    word, previous = [], this
                if s is None:
                    assert not t, "a special token was a target"
                    previous = None
                elif k < len(ids):
                    word.append(k)
            tokens += len(ids)
    assert tokens > 100_000 and multi_token_words > 1000
    # ~3 standard errors over the words seen (tens of thousands), and as often after a chosen word.
    assert abs(chosen / words - 0.15) < 3 * (0.15 * 0.85 / words) ** 0.5 + 0.002, (kind, chosen / words, words)
    assert abs(both_chosen / after_chosen - 0.15) < 3 * (0.15 * 0.85 / after_chosen) ** 0.5 + 0.002, (
        kind, both_chosen / after_chosen, "words are grouped more coarsely than the tokenizer's")


def test_vocabularies_above_65535_ids_work_end_to_end(sample_tokenizers, multilingual_texts, tmp_path):
    """An XLM-R-style Unigram with 66,000 extra pieces (never matched) placed before its real ones: every
    real id is above 65,535. Ids equal the library's, survive the cache (4-byte ids), reach the
    batches; random replacements and token counts cover the whole range."""
    spec = json.loads((sample_tokenizers["xlmr"] / "tokenizer.json").read_text(encoding="utf-8"))
    extra = 66_000
    vocab = spec["model"]["vocab"]
    spec["model"]["vocab"] = vocab[:4] + [[f"\U000F0000{i}", -50.0] for i in range(extra)] + vocab[4:]
    for added in spec["added_tokens"]:
        added["id"] += extra if added["id"] >= 4 else 0
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    (folder / "tokenizer_config.json").write_bytes((sample_tokenizers["xlmr"] / "tokenizer_config.json").read_bytes())
    ref, tok = library(folder), distilx.Tokenizer(folder)
    assert tok.vocab_size == ref.get_vocab_size() == 4000 + extra and tok.mask_id == 3999 + extra
    texts = multilingual_texts[::3]
    assert tok.encode(texts) == [e.ids for e in ref.encode_batch(texts, add_special_tokens=False)]

    path = corpus(tmp_path, texts)
    cache = tmp_path / "big.dxc"
    distilx.build_cache(path, tok, cache)
    assert distilx._native.cache_info(str(cache), tok)["id_bytes"] == 4
    stream = distilx.MaskedLMStream(None, tok, cache=cache, seq_len=64, batch_size=16, mlm_probability=0.0,
                                    shuffle=False, drop_last=False)
    got = [tuple(ids[att == 1].tolist()) for b in stream for ids, att in zip(b["input_ids"], b["attention_mask"])]
    assert got == library_rows(ref, texts, 64, tok.unk_id)
    assert max(max(r) for r in got) > 65_535

    masked = distilx.MaskedLMStream(None, tok, cache=cache, seq_len=64, batch_size=16, masking="frequency",
                                    mask_replace_prob=0.0, random_replace_prob=1.0, drop_last=False)
    counts = masked.token_counts
    assert counts.shape == (tok.vocab_size,) and counts[65_536:].sum() > 0.9 * counts.sum()
    drawn = torch.cat([b["input_ids"][b["labels"] != -100] for b in masked])
    assert drawn.max() > 65_535 and not torch.isin(drawn, torch.tensor(tok.special_ids)).any()
    # Uniform over the non-special ids: about as many draws above 65,535 as their share of the range.
    share = float((drawn > 65_535).float().mean())
    assert abs(share - (tok.vocab_size - 65_536) / (tok.vocab_size - 5)) < 0.02, share


def test_declarations_that_do_not_fit_are_refused(sample_tokenizers, tmp_path):
    src = sample_tokenizers["roberta"]
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    (folder / "tokenizer_config.json").write_text('{"mask_token": "[MASK]"}')
    with pytest.raises(ValueError, match=r"tokenizer_config.json declares mask_token \"\[MASK\]\".*no such token"):
        distilx.Tokenizer(folder)
    (folder / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(ValueError, match="tokenizer_config.json is not valid JSON"):
        distilx.Tokenizer(folder)
    # Without declarations and without a mask token under a usual name: the message says what and where.
    spec = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    for added in spec["added_tokens"]:
        added["content"] = added["content"].replace("<mask>", "<hole>")
    (folder / "tokenizer_config.json").unlink()
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks a mask token \(\[MASK\] or <mask>\).*tokenizer_config.json"):
        distilx.Tokenizer(folder)
