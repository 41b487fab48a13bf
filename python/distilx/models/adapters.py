"""How to reach the parts of each supported masked-LM architecture: one `ModelAdapter` per entry.

Student initialisation, the training loop, evaluation and the losses talk to a model only through its
adapter: the embeddings, the layer stack, the encoder's last hidden state, and the MLM head split in
two — `head_transform(hidden)` (what goes into the vocabulary projection) and `decoder()` (its weight
[V, H] and bias [V] or None) — so that the projection, the dominant cost, runs only on the rows a loss
or metric reads (or chunk by chunk, fused with the loss). `mlm_logits` = the two together, equal to
the model's own head.

Adding an architecture = one entry in `ADAPTERS` (+ a student builder in `builders.py` when the generic
"same class, fewer layers" one does not fit) and one test (tests/test_models.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .builders import bert_to_distilbert, same_class_fewer_layers

__all__ = ["ModelAdapter", "ADAPTERS", "UnsupportedModelError", "adapter_for", "adapter_for_type",
           "supported_teachers"]


class UnsupportedModelError(TypeError, ValueError):
    """A model distilx cannot serve. A TypeError for the object passed; also a ValueError, because it is
    bad user input (a teacher folder of another architecture) that the CLI reports in one line."""


def _base_model_hidden(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _output_embedding(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    projection = model.get_output_embeddings()
    return projection.weight, projection.bias


@dataclass(frozen=True)
class ModelAdapter:
    """The access recipe of one architecture; every callable takes the model first."""

    name: str  # e.g. "bert"
    model_types: tuple[str, ...]  # config.json `model_type` values this entry loads and serves
    teacher_class: str  # transformers class name named in messages, e.g. "BertForMaskedLM"
    head_prefixes: tuple[str, ...]  # state-dict prefixes of the MLM head (missing at load = untrained head)
    embeddings: Callable[[nn.Module], nn.Module]
    layers: Callable[[nn.Module], nn.ModuleList]
    head_transform: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # hidden [.., H] -> projection input
    # (teacher, layers, tied, adapter) -> student; None: not accepted as a teacher by init_student
    build_student: Callable | None = None
    last_hidden: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] = _base_model_hidden
    decoder: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor | None]] = _output_embedding
    # rows of embeddings(model).position_embeddings that no token position uses (RoBERTa: padding_idx + 1)
    reserved_positions: Callable[[nn.Module], int] = lambda model: 0

    def mlm_logits(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """The model's MLM head on hidden rows (..., H) -> logits (..., V), bit-equal to the model's own."""
        weight, bias = self.decoder(model)
        return F.linear(self.head_transform(model, hidden), weight, bias)


def _distilbert_transform(model, hidden):
    return model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))


def _roberta_transform(model, hidden):
    head = model.lm_head
    return head.layer_norm(F.gelu(head.dense(hidden)))


ADAPTERS: tuple[ModelAdapter, ...] = (
    ModelAdapter(
        name="bert", model_types=("bert",), teacher_class="BertForMaskedLM", head_prefixes=("cls.",),
        embeddings=lambda m: m.bert.embeddings, layers=lambda m: m.bert.encoder.layer,
        head_transform=lambda m, h: m.cls.predictions.transform(h), build_student=bert_to_distilbert),
    ModelAdapter(
        name="roberta", model_types=("roberta", "xlm-roberta", "camembert"), teacher_class="RobertaForMaskedLM",
        head_prefixes=("lm_head.",), embeddings=lambda m: m.roberta.embeddings,
        layers=lambda m: m.roberta.encoder.layer, head_transform=_roberta_transform,
        build_student=same_class_fewer_layers, reserved_positions=lambda m: m.config.pad_token_id + 1),
    ModelAdapter(  # a distilx student; not (yet) a teacher
        name="distilbert", model_types=("distilbert",), teacher_class="DistilBertForMaskedLM",
        head_prefixes=("vocab_",), embeddings=lambda m: m.distilbert.embeddings,
        layers=lambda m: m.distilbert.transformer.layer, head_transform=_distilbert_transform),
)


def supported_teachers() -> str:
    """'BertForMaskedLM or RobertaForMaskedLM': the classes init_student accepts, for messages."""
    return " or ".join(a.teacher_class for a in ADAPTERS if a.build_student is not None)


def adapter_for_type(model_type: str, where: str = "") -> ModelAdapter:
    """The entry serving a config.json `model_type`; ValueError naming the supported ones otherwise."""
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    known = sorted(t for a in ADAPTERS for t in a.model_types)
    raise ValueError(f"unsupported model_type {model_type!r}{' in ' + where if where else ''}: distilx "
                     f"supports the masked-LM models {known}")


def adapter_for(model: nn.Module) -> ModelAdapter:
    """The entry of a loaded masked-LM model; TypeError for anything else (a bare encoder, other types)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    adapter = next((a for a in ADAPTERS if model_type in a.model_types), None)
    has_head = callable(getattr(model, "get_output_embeddings", None)) and model.get_output_embeddings() is not None
    if adapter is None or not has_head:
        raise UnsupportedModelError(f"unsupported model {type(model).__name__}: distilx takes a "
                                    f"{supported_teachers()} (object or local folder) as teacher, and their "
                                    "distilx students")
    return adapter
