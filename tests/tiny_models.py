"""Tiny random masked-LM teachers of every supported architecture (no weights of these ship offline).

By default all use the real bert-base-uncased vocabulary (30522 ids; [PAD] 0, [CLS] 101, [SEP] 102,
[MASK] 103), declared in each config the way the architecture declares it, so that real English text
tokenized by the project's tokenizer feeds every one of them; given a tokenizer (e.g. the byte-level BPE
and Unigram ones of distilx.sample_tokenizers), its vocabulary and ids instead. Hidden size 32 and 4
layers keep a forward in milliseconds.
"""

import shutil
from pathlib import Path

import torch
import transformers
from transformers import PreTrainedTokenizerFast

from distilx import Tokenizer, assets

PAD, CLS, SEP, MASK, VOCAB = 0, 101, 102, 103, 30522
SMALL = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=48,
             max_position_embeddings=64)
DEBERTA = dict(relative_attention=True, position_buckets=8, max_relative_positions=16, pos_att_type=["p2c", "c2p"],
               norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False, type_vocab_size=0)

# name -> (transformers class name, config class name, config keywords besides the vocabulary's)
ARCHITECTURES = {
    "bert": ("BertForMaskedLM", "BertConfig", SMALL),
    "roberta": ("RobertaForMaskedLM", "RobertaConfig", dict(SMALL, type_vocab_size=1)),
    "xlm-roberta": ("XLMRobertaForMaskedLM", "XLMRobertaConfig", dict(SMALL, type_vocab_size=1)),
    "camembert": ("CamembertForMaskedLM", "CamembertConfig", dict(SMALL, type_vocab_size=1)),
    # the generator's MLM, with embeddings narrower than the hidden size (ELECTRA-small's layout)
    "electra": ("ElectraForMaskedLM", "ElectraConfig", dict(SMALL, embedding_size=16)),
    # DeBERTa-v3's layout: shared relative-position embeddings (bucketed, layer-normed), the new MLM head
    "deberta-v2": ("DebertaV2ForMaskedLM", "DebertaV2Config", dict(SMALL, legacy=False, **DEBERTA)),
    # DeBERTa-v2-xlarge's: the legacy (BERT-layout) head and the convolution after the first layer
    "deberta-v2-legacy": ("DebertaV2ForMaskedLM", "DebertaV2Config",
                          dict(SMALL, legacy=True, conv_kernel_size=3, **DEBERTA)),
    # global attention every 3rd layer, local window of 4 tokens: both kinds occur in a 17-token batch
    "modernbert": ("ModernBertForMaskedLM", "ModernBertConfig", dict(SMALL, global_attn_every_n_layers=3,
                                                                     local_attention=4)),
    "distilbert": ("DistilBertForMaskedLM", "DistilBertConfig",
                   dict(dim=32, n_layers=4, n_heads=2, hidden_dim=48, max_position_embeddings=64)),
    "eurobert": ("EuroBertForMaskedLM", "EuroBertConfig", dict(SMALL, num_key_value_heads=1)),
    # not in the table: served by the generic adapter
    "mpnet": ("MPNetForMaskedLM", "MPNetConfig", SMALL),
    "roformer": ("RoFormerForMaskedLM", "RoFormerConfig", dict(SMALL, embedding_size=32)),
}
# architectures whose classes this transformers version has (EuroBERT arrived after 5.0)
AVAILABLE = [name for name, (cls, _, _) in ARCHITECTURES.items() if hasattr(transformers, cls)]


def declared_ids(name: str, pad: int, cls: int, sep: int, mask: int) -> dict:
    """The special-token ids as architecture `name`'s config declares them (BERT-likes: pad only;
    RoBERTa-likes: bos/eos for the framing tokens; ModernBERT also cls/sep; EuroBERT also mask)."""
    if name in ("bert", "electra", "deberta-v2", "deberta-v2-legacy", "distilbert", "roformer"):
        return dict(pad_token_id=pad)
    ids = dict(pad_token_id=pad, bos_token_id=cls, eos_token_id=sep)
    if name == "modernbert":
        ids.update(cls_token_id=cls, sep_token_id=sep)
    if name == "eurobert":
        ids.update(mask_token_id=mask)
    return ids


def tiny_teacher(name: str, seed: int = 0, tokenizer=None, **overrides) -> torch.nn.Module:
    """A tiny random teacher of architecture `name` for the bert-base-uncased vocabulary, or for
    `tokenizer` (a distilx.Tokenizer: its vocabulary size and special ids)."""
    model_class, config_class, kwargs = ARCHITECTURES[name]
    if tokenizer is None:
        vocab = dict(vocab_size=VOCAB, **declared_ids(name, PAD, CLS, SEP, MASK))
    else:
        vocab = dict(vocab_size=tokenizer.vocab_size, **declared_ids(name, tokenizer.pad_id, tokenizer.cls_id,
                                                                     tokenizer.sep_id, tokenizer.mask_id))
    torch.manual_seed(seed)
    config = getattr(transformers, config_class)(**{**kwargs, **vocab, **overrides})
    return getattr(transformers, model_class)(config).eval()


def hf_tokenizer() -> PreTrainedTokenizerFast:
    """The bert-base-uncased tokenizer as a model-agnostic fast tokenizer (no token type ids, which
    ModernBERT, EuroBERT and DistilBERT do not take)."""
    return PreTrainedTokenizerFast(tokenizer_file=str(assets.minilm_tokenizer_json()), unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "attention_mask"])


def save_teacher(name: str, folder: Path, seed: int = 0, tokenizer_folder: Path | None = None) -> Path:
    """A tiny teacher folder: the model and its tokenizer (the bert-base-uncased one, or the tokenizer.json +
    tokenizer_config.json of `tokenizer_folder`), as AutoModelForMaskedLM and pipeline() load it."""
    if tokenizer_folder is None:
        tiny_teacher(name, seed).save_pretrained(folder)
        hf_tokenizer().save_pretrained(folder)
        return folder
    tiny_teacher(name, seed, tokenizer=Tokenizer(str(tokenizer_folder))).save_pretrained(folder)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer_folder / file, folder / file)
    return folder
