"""Student initialisation: a half-depth copy of a BERT-family masked-LM teacher.

A BERT teacher gives a `DistilBertForMaskedLM` (the mapping of the reference
`scripts/extract_distilbert.py`); a RoBERTa teacher gives a `RobertaForMaskedLM` with fewer layers.
Kept layers default to round(linspace(0, L-1, n)), i.e. [0, 2, 4, 7, 9, 11] for 12 -> 6.

Besides the initialisation, this module knows how to run "encoder, then MLM head on chosen rows"
for the three supported architectures (`encode_hidden`, `mlm_head`): the training loop and the
evaluation project only the positions a loss or metric needs onto the vocabulary, which is the
dominant cost on CPU (V = 30522).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch
from torch import nn

from .safe_loading import refusing_code

__all__ = ["init_student", "load_teacher", "student_layer_indices", "encode_hidden", "mlm_head",
           "check_vocab"]


def student_layer_indices(teacher_layers: int, n_layers: int) -> list[int]:
    """round(linspace(0, L-1, n)) with halves rounded up: 12 -> 6 gives [0, 2, 4, 7, 9, 11]."""
    if not 1 <= n_layers <= teacher_layers:
        raise ValueError(f"n_layers={n_layers} must be between 1 and the teacher's {teacher_layers} layers")
    if n_layers == 1:
        return [0]
    step = (teacher_layers - 1) / (n_layers - 1)
    return [int(math.floor(i * step + 0.5)) for i in range(n_layers)]


def load_teacher(path: str | Path) -> nn.Module:
    """Load a BERT or RoBERTa masked-LM teacher from a local folder (config.json + weights).

    Handles folders whose config.json has no `model_type` (rxnfp: treated as BERT). A checkpoint
    without trained MLM-head weights (a sentence encoder such as all-MiniLM-L6-v2) loads with a
    freshly initialised head and a warning: its logits mean nothing until the head is fitted.
    Weights load through safetensors or `torch.load(weights_only=True)` (transformers' own loader).
    """
    from transformers import BertConfig, BertForMaskedLM, RobertaConfig, RobertaForMaskedLM

    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} has no config.json: pass a folder saved by save_pretrained "
                                "(config.json + model.safetensors or pytorch_model.bin)")
    model_type = json.loads(config_file.read_text()).get("model_type", "bert")
    if model_type == "bert":
        config, cls = BertConfig.from_json_file(str(config_file)), BertForMaskedLM
    elif model_type in ("roberta", "xlm-roberta", "camembert"):
        config, cls = RobertaConfig.from_json_file(str(config_file)), RobertaForMaskedLM
    else:
        raise ValueError(f"unsupported teacher model_type {model_type!r} in {config_file}: distilx "
                         "supports BERT and RoBERTa masked-LM teachers")
    with refusing_code(path):
        model, info = cls.from_pretrained(str(path), config=config, output_loading_info=True)
    head_missing = [k for k in info.get("missing_keys", []) if "cls." in k or "lm_head" in k]
    if head_missing:
        warnings.warn(f"{path}: the checkpoint has no trained MLM head ({len(head_missing)} head tensors "
                      "freshly initialised); fit the head before using it as a teacher "
                      "(see distilx.demo.fit_teacher_head)", stacklevel=2)
    return model.eval()


def _teacher_kind(teacher: nn.Module) -> str:
    from transformers import BertForMaskedLM, RobertaForMaskedLM
    if isinstance(teacher, BertForMaskedLM):
        return "bert"
    if isinstance(teacher, RobertaForMaskedLM):
        return "roberta"
    raise TypeError(f"unsupported teacher {type(teacher).__name__}: init_student takes a "
                    "BertForMaskedLM or RobertaForMaskedLM (object or local folder)")


def _tied(model: nn.Module) -> bool:
    """Is the vocabulary projection the word-embedding matrix (same storage or same values)?"""
    out, inp = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    return out is inp or (out.shape == inp.shape and torch.equal(out, inp))


def init_student(teacher, n_layers: int | None = None, layers: list[int] | None = None) -> nn.Module:
    """Build a shallower student from `teacher` (a BertForMaskedLM / RobertaForMaskedLM or a folder).

    n_layers: how many layers the student keeps (default: half the teacher's, rounded up);
    layers: the teacher layer indices to copy, in order (overrides n_layers).
    Returns a DistilBertForMaskedLM (BERT teacher) or RobertaForMaskedLM (RoBERTa teacher) in
    fp32, train mode. The vocabulary projection stays tied to the word embeddings exactly when it
    is tied in the teacher; otherwise the teacher's decoder is copied into an untied projector.
    """
    if isinstance(teacher, (str, Path)):
        teacher = load_teacher(teacher)
    kind = _teacher_kind(teacher)
    tcfg = teacher.config
    total = tcfg.num_hidden_layers
    if layers is None:
        layers = student_layer_indices(total, n_layers if n_layers is not None else (total + 1) // 2)
    else:
        layers = [int(i) for i in layers]
        if n_layers is not None and n_layers != len(layers):
            raise ValueError(f"n_layers={n_layers} disagrees with layers={layers}; pass one of them")
        if not layers or any(not 0 <= i < total for i in layers):
            raise ValueError(f"layers={layers} must be a non-empty list of indices in [0, {total - 1}]")
    tied = _tied(teacher)
    with torch.no_grad():
        if kind == "bert":
            student = _bert_to_distilbert(teacher, layers, tied)
        else:
            student = _roberta_to_roberta(teacher, layers, tied)
    student.config.distilx_teacher_layers = layers  # provenance, saved in config.json
    return student.float().train()


def _copy(dst: nn.Module, src: nn.Module) -> None:
    dst.weight.copy_(src.weight)
    if getattr(dst, "bias", None) is not None:
        dst.bias.copy_(src.bias)


def _bert_to_distilbert(teacher: nn.Module, layers: list[int], tied: bool) -> nn.Module:
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    tcfg = teacher.config
    if getattr(tcfg, "position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"teacher position_embedding_type={tcfg.position_embedding_type!r}: "
                         "DistilBERT students support absolute position embeddings only")
    if tcfg.hidden_act not in ("gelu", "relu"):
        raise ValueError(f"teacher hidden_act={tcfg.hidden_act!r}: DistilBERT supports 'gelu' and 'relu'")
    if abs(tcfg.layer_norm_eps - 1e-12) > 1e-15:
        warnings.warn(f"teacher layer_norm_eps={tcfg.layer_norm_eps} but DistilBERT's LayerNorms use "
                      "1e-12: the student's outputs will differ slightly from the teacher's", stacklevel=3)
    scfg = DistilBertConfig(
        vocab_size=tcfg.vocab_size, max_position_embeddings=tcfg.max_position_embeddings,
        sinusoidal_pos_embds=False, n_layers=len(layers), n_heads=tcfg.num_attention_heads,
        dim=tcfg.hidden_size, hidden_dim=tcfg.intermediate_size, dropout=tcfg.hidden_dropout_prob,
        attention_dropout=tcfg.attention_probs_dropout_prob, activation=tcfg.hidden_act,
        initializer_range=tcfg.initializer_range, pad_token_id=tcfg.pad_token_id,
        tie_word_embeddings=tied)
    student = DistilBertForMaskedLM(scfg)
    temb, semb = teacher.bert.embeddings, student.distilbert.embeddings
    _copy(semb.word_embeddings, temb.word_embeddings)
    # BERT adds token_type_embeddings[0] to every single-segment token; DistilBERT has no token
    # types, so fold that row into the positions to keep the embedding output identical.
    semb.position_embeddings.weight.copy_(temb.position_embeddings.weight + temb.token_type_embeddings.weight[0])
    _copy(semb.LayerNorm, temb.LayerNorm)
    for s_layer, t_index in zip(student.distilbert.transformer.layer, layers):
        t = teacher.bert.encoder.layer[t_index]
        _copy(s_layer.attention.q_lin, t.attention.self.query)
        _copy(s_layer.attention.k_lin, t.attention.self.key)
        _copy(s_layer.attention.v_lin, t.attention.self.value)
        _copy(s_layer.attention.out_lin, t.attention.output.dense)
        _copy(s_layer.sa_layer_norm, t.attention.output.LayerNorm)
        _copy(s_layer.ffn.lin1, t.intermediate.dense)
        _copy(s_layer.ffn.lin2, t.output.dense)
        _copy(s_layer.output_layer_norm, t.output.LayerNorm)
    head = teacher.cls.predictions
    _copy(student.vocab_transform, head.transform.dense)
    _copy(student.vocab_layer_norm, head.transform.LayerNorm)
    if not tied:
        student.vocab_projector.weight.copy_(head.decoder.weight)
    student.vocab_projector.bias.copy_(head.bias if head.bias is not None else head.decoder.bias)
    return student


def _roberta_to_roberta(teacher: nn.Module, layers: list[int], tied: bool) -> nn.Module:
    from transformers import RobertaForMaskedLM

    scfg = teacher.config.__class__.from_dict(teacher.config.to_dict())
    scfg.num_hidden_layers = len(layers)
    scfg.tie_word_embeddings = tied
    student = RobertaForMaskedLM(scfg)
    student.roberta.embeddings.load_state_dict(teacher.roberta.embeddings.state_dict())
    for s_layer, t_index in zip(student.roberta.encoder.layer, layers):
        s_layer.load_state_dict(teacher.roberta.encoder.layer[t_index].state_dict())
    head_state = teacher.lm_head.state_dict()
    if tied:
        head_state = {k: v for k, v in head_state.items() if k != "decoder.weight"}
    student.lm_head.load_state_dict(head_state, strict=False)
    if not tied:
        student.lm_head.decoder.weight.copy_(teacher.lm_head.decoder.weight)
    return student


def check_vocab(model: nn.Module, tokenizer) -> None:
    """Raise if the tokenizer can produce ids the model has no embedding for."""
    model_vocab = model.get_input_embeddings().weight.shape[0]
    if tokenizer.vocab_size > model_vocab:
        raise ValueError(f"tokenizer vocabulary ({tokenizer.vocab_size} ids) is larger than the model's "
                         f"({model_vocab} embeddings): the tokenizer does not belong to this teacher; "
                         "pass the teacher's own tokenizer (tokenizer = the teacher folder)")
    for name in ("cls_id", "sep_id", "mask_id", "pad_id"):
        token_id = getattr(tokenizer, name, None)
        if token_id is not None and token_id >= model_vocab:
            raise ValueError(f"tokenizer {name}={token_id} is outside the model's {model_vocab} embeddings")


# --- running encoder and head separately (so only the needed rows meet the vocabulary) ---

def encode_hidden(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Last-layer hidden states (B, L, H) of a BERT / RoBERTa / DistilBERT masked-LM model."""
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def mlm_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The model's MLM head applied to hidden rows (..., H) -> logits (..., V)."""
    from transformers import DistilBertForMaskedLM

    if isinstance(model, DistilBertForMaskedLM):
        x = model.activation(model.vocab_transform(hidden))
        return model.vocab_projector(model.vocab_layer_norm(x))
    if hasattr(model, "cls"):
        return model.cls(hidden)
    if hasattr(model, "lm_head"):
        return model.lm_head(hidden)
    raise TypeError(f"don't know the MLM head of {type(model).__name__}")
