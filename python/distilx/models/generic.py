"""A `ModelAdapter` for a masked-LM model type the table does not list, found from the model itself.

Accepted when (1) the model is the class `AutoModelForMaskedLM` builds for its model type; (2) its base
model holds exactly one outermost `nn.ModuleList` of `num_hidden_layers` blocks of one class (the layer
stack; ALBERT's shared layers, Funnel's blocks or XLM's parallel lists are refused); (3) its MLM head
is one module beside the base model (or two: a transform and the projection), and the projection is
`get_output_embeddings()`, called as a module; and (4) on a probe batch, `head_transform` + `decoder`
reproduce the model's own logits. Anything else is an `UnsupportedModelError` saying which test failed.
"""

from __future__ import annotations

import torch
from torch import nn

from .adapters import ModelAdapter, UnsupportedModelError, supported_types

__all__ = ["generic_adapter"]


class _ProjectionReached(Exception):
    """Stops the head at its vocabulary projection once the projection's input is captured."""


def _layer_stack_path(base: nn.Module, n_layers) -> str:
    """Name (within the base model) of the one outermost ModuleList of `n_layers` same-class blocks."""
    found = [name for name, module in base.named_modules()
             if isinstance(module, nn.ModuleList) and isinstance(n_layers, int) and len(module) == n_layers > 0
             and len({type(block) for block in module}) == 1]
    outermost = [n for n in found if not any(n.startswith(other + ".") for other in found if other != n)]
    if len(outermost) != 1:
        what = "no" if not outermost else f"{len(outermost)} ({', '.join(outermost)})"
        raise ValueError(f"its base model has {what} nn.ModuleList of num_hidden_layers={n_layers} identical "
                         "blocks; distilx needs exactly one (the layer stack)")
    return outermost[0]


def _head_transform(model: nn.Module):
    """head_transform for a head that is one module beside the base model ending in the projection
    (stopped at the projection), or a transform module beside the projection module (called whole)."""
    projection = model.get_output_embeddings()
    beside = {name: child for name, child in model.named_children() if child is not model.base_model}
    if len(beside) == 2 and any(child is projection for child in beside.values()):
        transform = next(name for name, child in beside.items() if child is not projection)
        return lambda m, hidden: m.get_submodule(transform)(hidden)
    if len(beside) == 1 and any(m is projection for m in next(iter(beside.values())).modules()):
        return _stopped_at_projection(next(iter(beside)))
    raise ValueError(f"its MLM head is not one module beside the base model ending in get_output_embeddings() "
                     f"(modules beside the base model: {sorted(beside)})")


def _stopped_at_projection(head_name: str):
    def head_transform(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """The head module run up to its projection: the projection's input."""
        projection, head = model.get_output_embeddings(), model.get_submodule(head_name)
        if head is projection:
            return hidden
        captured = []

        def grab(module, args):
            captured.append(args[0])
            raise _ProjectionReached

        handle = projection.register_forward_pre_hook(grab)
        try:
            head(hidden)
        except _ProjectionReached:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ValueError(f"{type(model).__name__}'s head does not call its projection module")
        return captured[0]

    return head_transform


def _check_against_own_logits(adapter: ModelAdapter, model: nn.Module) -> None:
    """The adapter's logits equal the model's own on a probe batch (else the layout is not understood)."""
    device = next(model.parameters()).device
    ids = torch.arange(2, 14, device=device).remainder(model.config.vocab_size).view(2, 6)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            own = model(input_ids=ids, attention_mask=mask).logits.float()
            ours = adapter.mlm_logits(model, adapter.last_hidden(model, ids, mask)).float()
    finally:
        model.train(was_training)
    if ours.shape != own.shape or (ours - own).abs().max() > 1e-3 * own.abs().max() + 1e-5:
        raise ValueError("its head, split into transform + projection, does not reproduce the model's logits")


def _embeddings(model: nn.Module) -> nn.Module:
    base = model.base_model
    return base.embeddings if isinstance(getattr(base, "embeddings", None), nn.Module) else model.get_input_embeddings()


def _reserved_positions(model: nn.Module) -> int:
    """Embeddings that keep a `padding_idx` number positions from padding_idx + 1 (RoBERTa's convention,
    kept by MPNet, XLM-R-XL, Data2Vec-text...): those first rows hold no token."""
    padding_idx = getattr(_embeddings(model), "padding_idx", None)
    return padding_idx + 1 if isinstance(padding_idx, int) else 0


def generic_adapter(model: nn.Module) -> ModelAdapter:
    """The adapter of a masked-LM model outside the table, or UnsupportedModelError saying why not."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    config = model.config
    model_type = getattr(config, "model_type", None)
    name = type(model).__name__
    try:
        if MODEL_FOR_MASKED_LM_MAPPING_NAMES.get(model_type) != name:
            raise ValueError("it is not the masked-LM class AutoModelForMaskedLM builds for its model type")
        stack = _layer_stack_path(model.base_model, getattr(config, "num_hidden_layers", None))
        adapter = ModelAdapter(
            name=model_type, model_types=(model_type,),
            embeddings=_embeddings,
            layers=lambda m: m.base_model.get_submodule(stack), head_transform=_head_transform(model),
            reserved_positions=_reserved_positions)
        _check_against_own_logits(adapter, model)
    except ValueError as exc:
        raise UnsupportedModelError(f"unsupported model {name} (model_type {model_type!r}): {exc}. distilx takes "
                                    f"{supported_types()}") from None
    return adapter
