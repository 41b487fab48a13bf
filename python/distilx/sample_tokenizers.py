"""Small tokenizers of the kinds masked-LM encoders use, trained with the Hugging Face `tokenizers`
library on the offline multilingual corpus (`assets.multilingual_documents`): stand-ins for the
RoBERTa/ModernBERT byte-level BPE and the XLM-R/DeBERTa-v3 SentencePiece Unigram, for the tests
(ids compared with the library's, whole-word masking, specials) and the benchmarks. No download.

    folders = train_sample_tokenizers(tmp_dir)   # {"roberta": Path, "modernbert": ..., ...}
    distilx.Tokenizer(folders["xlmr"])           # tokenizer.json + tokenizer_config.json

Each style is written as a folder holding `tokenizer.json` and a `tokenizer_config.json` naming
its special tokens, as `save_pretrained` writes them.

| style | model | pre-tokenizer | special tokens (ids) | framing |
|---|---|---|---|---|
| roberta | byte-level BPE | ByteLevel | `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, `<mask>` last | RobertaProcessing `<s> A </s>` |
| modernbert | byte-level BPE | ByteLevel | `[CLS]` 0, `[PAD]` 1, `[SEP]` 2, `[UNK]` 3, `[MASK]` last | TemplateProcessing `[CLS] A [SEP]` |
| xlmr | Unigram | NFKC + Metaspace `▁` | `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, `<mask>` last | TemplateProcessing `<s> A </s>` |
| deberta | Unigram | NFKC + Metaspace `▁` | `[PAD]` 0, `[CLS]` 1, `[SEP]` 2, `[UNK]` 3, `[MASK]` last | TemplateProcessing `[CLS] A [SEP]` |

The two styles of one model share one training (the second renames the first's special tokens).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import assets

__all__ = ["STYLES", "train_sample_tokenizers", "training_and_check_texts"]

#: style -> (model, its special token of each role).
STYLES = {
    "roberta": ("bpe", {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}),
    "modernbert": ("bpe", {"cls": "[CLS]", "pad": "[PAD]", "sep": "[SEP]", "unk": "[UNK]", "mask": "[MASK]"}),
    "xlmr": ("unigram", {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}),
    "deberta": ("unigram", {"cls": "[CLS]", "pad": "[PAD]", "sep": "[SEP]", "unk": "[UNK]", "mask": "[MASK]"}),
}
#: What a training writes: the special tokens of ids 0, 1, 2, 3 and the last id, and their roles.
_TRAINED = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
_ROLES = ("cls", "pad", "sep", "unk", "mask")
#: Styles whose ids hold the roles in another order (DeBERTa-v3: [PAD] 0, [CLS] 1).
_ROLES_BY_ID = {"deberta": ("pad", "cls", "sep", "unk", "mask")}


def training_and_check_texts(train_bytes: int = 150_000) -> tuple[list[str], list[str]]:
    """(training texts, check texts), disjoint: per language of `assets.multilingual_documents()`,
    the first half of its documents (at most `train_bytes` of them) trains, the second half checks."""
    train, check = [], []
    for docs in assets.multilingual_documents().values():
        half = len(docs) // 2
        size = 0
        for doc in docs[:half]:
            if size >= train_bytes:
                break
            train.append(doc)
            size += len(doc.encode())
        check.extend(docs[half:])
    return train, check


def _train(model: str, texts: list[str], vocab_size: int):
    """A tokenizer of `model` with the angle-bracket specials (`<s> <pad> </s> <unk>` first, `<mask>` last)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    first = list(_TRAINED[:4])
    if model == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, special_tokens=first, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        # Fewer EM rounds than the defaults: a few seconds instead of a minute, for a test-sized vocabulary.
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size - 1, special_tokens=first, unk_token="<unk>",
                                          show_progress=False, seed_size=50_000, n_sub_iterations=1,
                                          shrinking_factor=0.5, max_piece_length=8)
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens(["<mask>"])  # last, as RoBERTa's and XLM-R's <mask>
    return tok


def _styled(trained, style: str):
    """The trained tokenizer with `style`'s special-token names and framing."""
    from tokenizers import Tokenizer, processors

    names = STYLES[style][1]
    rename = {old: names[role] for old, role in zip(_TRAINED, _ROLES_BY_ID.get(style, _ROLES))}
    spec = json.loads(trained.to_str())
    for added in spec["added_tokens"]:
        added["content"] = rename.get(added["content"], added["content"])
    vocab = spec["model"]["vocab"]
    if isinstance(vocab, dict):  # BPE: token -> id
        spec["model"]["vocab"] = {rename.get(t, t): i for t, i in vocab.items()}
    else:  # Unigram: [token, score] by id
        spec["model"]["vocab"] = [[rename.get(t, t), score] for t, score in vocab]
    tok = Tokenizer.from_str(json.dumps(spec))
    cls, sep = names["cls"], names["sep"]
    ids = (tok.token_to_id(cls), tok.token_to_id(sep))
    if style == "roberta":
        tok.post_processor = processors.RobertaProcessing((sep, ids[1]), (cls, ids[0]), trim_offsets=True,
                                                          add_prefix_space=False)
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} {sep} $B {sep}", special_tokens=[(cls, ids[0]), (sep, ids[1])])
    return tok


def train_sample_tokenizers(folder: str | Path, styles=tuple(STYLES), vocab_size: int = 4000,
                            train_bytes: int = 150_000) -> dict[str, Path]:
    """Train each model the `styles` need once on `training_and_check_texts(train_bytes)[0]` and
    write every style into `folder/<style>/` (tokenizer.json + tokenizer_config.json)."""
    folder = Path(folder)
    texts = training_and_check_texts(train_bytes)[0]
    trained = {model: _train(model, texts, vocab_size) for model in {STYLES[s][0] for s in styles}}
    out = {}
    for style in styles:
        names = STYLES[style][1]
        tok = _styled(trained[STYLES[style][0]], style)
        path = folder / style
        path.mkdir(parents=True, exist_ok=True)
        tok.save(str(path / "tokenizer.json"))
        config = {f"{role}_token": name for role, name in names.items()}
        # As save_pretrained writes RoBERTa's and XLM-R's: the mask token as an AddedToken dict.
        config["mask_token"] = {"__type": "AddedToken", "content": config["mask_token"], "lstrip": True,
                                "normalized": False, "rstrip": False, "single_word": False, "special": True}
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        (path / "tokenizer_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        out[style] = path
    return out
