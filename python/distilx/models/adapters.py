"""How to reach the parts of each supported masked-LM architecture: one `ModelAdapter` per entry.

Student initialisation, the training loop, evaluation and the losses talk to a model only through its
adapter. Two halves:

- the encoder — `embeddings`, `layers` (the stack of blocks), `last_hidden` — reached through
  `model.base_model`, so the same entry serves every head class of the architecture (…ForMaskedLM
  today; a …ForSequenceClassification's encoder is reached the same way);
- the MLM head split in two — `head_transform(model, hidden)` (what goes into the vocabulary
  projection) and `decoder(model)` (its weight [V, E] and bias [V] or None) — so that the projection,
  the dominant cost, runs only on the rows a loss or metric reads (or chunk by chunk, fused with the
  loss). `mlm_logits` = the two together, equal to the model's own head. Both work on any gathered
  [n, H] row set: no head of the table needs more than the rows' hidden states;
- `qkv(layer)`: a layer's attention Q/K/V projection modules (attention_access.py reads them through
  hooks for the attention-relation loss).

How each architecture names and lays out its width (narrower students) is in shapes.py's table.

Adding an architecture = one entry in `ADAPTERS` (+ a student builder in `builders.py` when the generic
"same class, fewer layers" one does not fit) and one case in tests/test_models.py. A masked-LM model
type without an entry is served by `generic.py` when its layer stack and head can be found and checked.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .attention_access import bert_qkv, deberta_qkv, distilbert_qkv, eurobert_qkv, modernbert_qkv
from .builders import bert_to_distilbert, same_class_fewer_layers

__all__ = ["ModelAdapter", "ADAPTERS", "UnsupportedModelError", "adapter_for", "adapter_for_type",
           "encoder_adapter", "supported_types"]


class UnsupportedModelError(TypeError, ValueError):
    """A model distilx cannot serve. A TypeError for the object passed; also a ValueError, because it is
    bad user input (a teacher folder of another architecture) that the CLI reports in one line."""


def _base_model_hidden(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _output_embedding(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    projection = model.get_output_embeddings()
    return projection.weight, projection.bias


def _no_pinned_layer(config) -> str | None:
    return None


@dataclass(frozen=True)
class ModelAdapter:
    """The access recipe of one architecture; every callable takes the model first."""

    name: str  # e.g. "bert"
    model_types: tuple[str, ...]  # config.json `model_type` values this entry serves
    embeddings: Callable[[nn.Module], nn.Module]  # the module that turns ids into the first layer's input
    layers: Callable[[nn.Module], nn.ModuleList]
    head_transform: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # hidden [.., H] -> projection input [.., E]
    # (teacher, layers, tied, adapter) -> the default student (init_student's student_class="auto")
    build_student: Callable = same_class_fewer_layers
    last_hidden: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] = _base_model_hidden
    decoder: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor | None]] = _output_embedding
    # config -> why the teacher's layer 0 must stay the student's first layer (None: any layers may be kept)
    pinned_first_layer: Callable[[object], str | None] = _no_pinned_layer
    # rows of embeddings(model).position_embeddings that no token position uses (RoBERTa: padding_idx + 1)
    reserved_positions: Callable[[nn.Module], int] = lambda model: 0
    # layer -> its attention's Q, K, V projection modules, or one fused q|k|v module (attention_access.py);
    # None: unknown (the generic entry), so no attention-relation distillation
    qkv: Callable[[nn.Module], tuple[nn.Module, ...]] | None = None

    def mlm_logits(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """The model's MLM head on hidden rows (..., H) -> logits (..., V), equal to the model's own."""
        weight, bias = self.decoder(model)
        return F.linear(self.head_transform(model, hidden), weight, bias)


def _distilbert_transform(model, hidden):
    return model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))


def _roberta_transform(model, hidden):
    head = model.lm_head
    return head.layer_norm(F.gelu(head.dense(hidden)))


def _deberta_legacy(model) -> bool:
    """The BERT-layout head (LegacyDebertaV2OnlyMLMHead); transformers without the flag have only that one."""
    return getattr(model.config, "legacy", True)


def _deberta_transform(model, hidden):
    if _deberta_legacy(model):
        return model.cls.predictions.transform(hidden)
    head = model.lm_predictions.lm_head
    return head.LayerNorm(head.transform_act_fn(head.dense(hidden)))


def _deberta_decoder(model):
    if _deberta_legacy(model):
        return _output_embedding(model)
    # the new head multiplies by the word embeddings itself; its get_output_embeddings() is the
    # transform's dense layer, not the projection
    return model.deberta.embeddings.word_embeddings.weight, model.lm_predictions.lm_head.bias


def _deberta_pinned(config) -> str | None:
    if getattr(config, "conv_kernel_size", 0) > 0:
        return f"DeBERTa-v2 runs its convolution (conv_kernel_size={config.conv_kernel_size}) after the first layer"
    return None


def _modernbert_pinned(config) -> str | None:
    return "ModernBERT's first layer has no attention LayerNorm (the embeddings' norm serves it)"


ADAPTERS: tuple[ModelAdapter, ...] = (
    ModelAdapter(
        name="bert", model_types=("bert",), embeddings=lambda m: m.base_model.embeddings,
        layers=lambda m: m.base_model.encoder.layer, head_transform=lambda m, h: m.cls.predictions.transform(h),
        build_student=bert_to_distilbert, qkv=bert_qkv),
    ModelAdapter(
        name="roberta", model_types=("roberta", "xlm-roberta", "camembert"),
        embeddings=lambda m: m.base_model.embeddings, layers=lambda m: m.base_model.encoder.layer,
        head_transform=_roberta_transform, reserved_positions=lambda m: m.config.pad_token_id + 1, qkv=bert_qkv),
    ModelAdapter(
        name="distilbert", model_types=("distilbert",), embeddings=lambda m: m.base_model.embeddings,
        layers=lambda m: m.base_model.transformer.layer, head_transform=_distilbert_transform, qkv=distilbert_qkv),
    ModelAdapter(  # the generator (ElectraForMaskedLM); embeddings may be narrower than the hidden size
        name="electra", model_types=("electra",), embeddings=lambda m: m.base_model.embeddings,
        layers=lambda m: m.base_model.encoder.layer, head_transform=lambda m, h: m.generator_predictions(h),
        qkv=bert_qkv),
    ModelAdapter(  # relative-position embeddings live in the encoder, shared by every layer
        name="deberta-v2", model_types=("deberta-v2",), embeddings=lambda m: m.base_model.embeddings,
        layers=lambda m: m.base_model.encoder.layer, head_transform=_deberta_transform, decoder=_deberta_decoder,
        pinned_first_layer=_deberta_pinned, qkv=deberta_qkv),
    ModelAdapter(  # per-layer global/local attention: config.layer_types, remapped by the builder
        name="modernbert", model_types=("modernbert",), embeddings=lambda m: m.base_model.embeddings,
        layers=lambda m: m.base_model.layers, head_transform=lambda m, h: m.head(h),
        pinned_first_layer=_modernbert_pinned, qkv=modernbert_qkv),
    ModelAdapter(  # no head transform: the projection reads the final RMSNorm's output
        name="eurobert", model_types=("eurobert",), embeddings=lambda m: m.base_model.embed_tokens,
        layers=lambda m: m.base_model.layers, head_transform=lambda m, h: h, qkv=eurobert_qkv),
)


def supported_types() -> str:
    """What distilx takes, for messages: the table's model types and the generic rule."""
    known = sorted(t for a in ADAPTERS for t in a.model_types)
    return (f"masked-LM models (…ForMaskedLM) of the model types {known}, or of another type that "
            "AutoModelForMaskedLM loads and whose encoder is one stack of identical layers (docs/pipeline.md)")


def adapter_for_type(model_type: str, where: str = "") -> ModelAdapter:
    """The table entry serving a config.json `model_type`; UnsupportedModelError otherwise."""
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    raise UnsupportedModelError(f"unsupported model_type {model_type!r}{' in ' + where if where else ''}: "
                                f"no entry in distilx's table; distilx takes {supported_types()}")


# generic entries, found and checked once per model object
_GENERIC: "weakref.WeakKeyDictionary[nn.Module, ModelAdapter]" = weakref.WeakKeyDictionary()


def adapter_for(model: nn.Module) -> ModelAdapter:
    """The entry of a loaded masked-LM model (a table entry, else a generic one found and checked);
    UnsupportedModelError for anything else (a bare encoder, a classifier, an unsupported layout)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if not _has_mlm_head(model):
        raise UnsupportedModelError(f"{type(model).__name__} has no masked-LM head: distilx takes {supported_types()}")
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    if model not in _GENERIC:
        from .generic import generic_adapter  # imports this module: loaded on first use

        _GENERIC[model] = generic_adapter(model)
    return _GENERIC[model]


def _has_mlm_head(model: nn.Module) -> bool:
    return callable(getattr(model, "get_output_embeddings", None)) and model.get_output_embeddings() is not None


def encoder_adapter(model: nn.Module) -> ModelAdapter:
    """The entry of `model`'s architecture whatever its head: a masked-LM model's own entry, else the entry
    of its config's model_type (whose encoder half — embeddings, layers — reaches a
    …ForSequenceClassification the same way)."""
    if _has_mlm_head(model):
        return adapter_for(model)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    try:
        return adapter_for_type(model_type)
    except ValueError as exc:
        raise UnsupportedModelError(f"unsupported model {type(model).__name__}: {exc}") from None
