"""Tiny random masked-LM teachers of every supported architecture (no weights of these ship offline).

All use the real bert-base-uncased vocabulary (30522 ids; [PAD] 0, [CLS] 101, [SEP] 102, [MASK] 103),
declared in each config the way the architecture declares it, so that real English text tokenized by the
project's tokenizer feeds every one of them. Hidden size 32 and 4 layers keep a forward in milliseconds.
"""

from pathlib import Path

import torch
import transformers
from transformers import PreTrainedTokenizerFast

from distilx import assets

PAD, CLS, SEP, MASK, VOCAB = 0, 101, 102, 103, 30522
SMALL = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=48,
             max_position_embeddings=64)
BOS_EOS = dict(pad_token_id=PAD, bos_token_id=CLS, eos_token_id=SEP)  # RoBERTa-style declarations
DEBERTA = dict(relative_attention=True, position_buckets=8, max_relative_positions=16, pos_att_type=["p2c", "c2p"],
               norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False, type_vocab_size=0)

# name -> (transformers class name, config class name, config keywords)
ARCHITECTURES = {
    "bert": ("BertForMaskedLM", "BertConfig", dict(SMALL, pad_token_id=PAD)),
    "roberta": ("RobertaForMaskedLM", "RobertaConfig", dict(SMALL, type_vocab_size=1, **BOS_EOS)),
    "xlm-roberta": ("XLMRobertaForMaskedLM", "XLMRobertaConfig", dict(SMALL, type_vocab_size=1, **BOS_EOS)),
    "camembert": ("CamembertForMaskedLM", "CamembertConfig", dict(SMALL, type_vocab_size=1, **BOS_EOS)),
    # the generator's MLM, with embeddings narrower than the hidden size (ELECTRA-small's layout)
    "electra": ("ElectraForMaskedLM", "ElectraConfig", dict(SMALL, embedding_size=16, pad_token_id=PAD)),
    # DeBERTa-v3's layout: shared relative-position embeddings (bucketed, layer-normed), the new MLM head
    "deberta-v2": ("DebertaV2ForMaskedLM", "DebertaV2Config", dict(SMALL, legacy=False, pad_token_id=PAD, **DEBERTA)),
    # DeBERTa-v2-xlarge's: the legacy (BERT-layout) head and the convolution after the first layer
    "deberta-v2-legacy": ("DebertaV2ForMaskedLM", "DebertaV2Config",
                          dict(SMALL, legacy=True, conv_kernel_size=3, pad_token_id=PAD, **DEBERTA)),
    # global attention every 3rd layer, local window of 4 tokens: both kinds occur in a 17-token batch
    "modernbert": ("ModernBertForMaskedLM", "ModernBertConfig",
                   dict(SMALL, global_attn_every_n_layers=3, local_attention=4, cls_token_id=CLS, sep_token_id=SEP,
                        **BOS_EOS)),
    "distilbert": ("DistilBertForMaskedLM", "DistilBertConfig",
                   dict(vocab_size=VOCAB, dim=32, n_layers=4, n_heads=2, hidden_dim=48, max_position_embeddings=64,
                        pad_token_id=PAD)),
    "eurobert": ("EuroBertForMaskedLM", "EuroBertConfig",
                 dict(SMALL, num_key_value_heads=1, mask_token_id=MASK, **BOS_EOS)),
    # not in the table: served by the generic adapter
    "mpnet": ("MPNetForMaskedLM", "MPNetConfig", dict(SMALL, **BOS_EOS)),
    "roformer": ("RoFormerForMaskedLM", "RoFormerConfig", dict(SMALL, embedding_size=32, pad_token_id=PAD)),
}
# architectures whose classes this transformers version has (EuroBERT arrived after 5.0)
AVAILABLE = [name for name, (cls, _, _) in ARCHITECTURES.items() if hasattr(transformers, cls)]


def tiny_teacher(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    model_class, config_class, kwargs = ARCHITECTURES[name]
    torch.manual_seed(seed)
    config = getattr(transformers, config_class)(**{**kwargs, **overrides})
    return getattr(transformers, model_class)(config).eval()


def hf_tokenizer() -> PreTrainedTokenizerFast:
    """The bert-base-uncased tokenizer as a model-agnostic fast tokenizer (no token type ids, which
    ModernBERT, EuroBERT and DistilBERT do not take)."""
    return PreTrainedTokenizerFast(tokenizer_file=str(assets.minilm_tokenizer_json()), unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "attention_mask"])


def save_teacher(name: str, folder: Path, seed: int = 0, **overrides) -> Path:
    """A tiny teacher folder: the model and the tokenizer, as AutoModelForMaskedLM and pipeline() load it."""
    tiny_teacher(name, seed, **overrides).save_pretrained(folder)
    hf_tokenizer().save_pretrained(folder)
    return folder
