"""The attention's Q, K and V projections of one layer, per architecture (the adapter table's `qkv` member).

`AttentionTap(model, layer)` hooks the layer's projection modules (forward hooks: nothing about the model
changes) and keeps what they computed in the model's latest forward: `qkv()` gives Q, K and V as
[B, L, heads x head_dim] — the projections' outputs, before any rotary position embedding is applied and
before the heads are split.

- BERT, RoBERTa/XLM-R/CamemBERT, ELECTRA: `attention.self.query/key/value`; DistilBERT: `attention.q_lin/k_lin/v_lin`;
- DeBERTa-v2: `attention.self.query_proj/key_proj/value_proj` (with shared attention keys, `key_proj` also
  projects the relative-position embeddings later in the same forward: the first call, the tokens', is kept);
- ModernBERT: the fused `attn.Wqkv`, whose output is q | k | v along the last dim;
- EuroBERT (grouped-query attention): `self_attn.q_proj/k_proj/v_proj`; K and V have one head per group of
  query heads, so each is repeated to the query heads (as the attention itself uses them:
  transformers' repeat_kv), giving Q, K and V the same width. A relation head then compares the keys
  that its query heads actually attend with.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AttentionTap", "bert_qkv", "distilbert_qkv", "deberta_qkv", "modernbert_qkv", "eurobert_qkv"]


def bert_qkv(layer: nn.Module) -> tuple[nn.Module, ...]:
    attention = layer.attention.self
    return attention.query, attention.key, attention.value


def distilbert_qkv(layer: nn.Module) -> tuple[nn.Module, ...]:
    return layer.attention.q_lin, layer.attention.k_lin, layer.attention.v_lin


def deberta_qkv(layer: nn.Module) -> tuple[nn.Module, ...]:
    attention = layer.attention.self
    return attention.query_proj, attention.key_proj, attention.value_proj


def modernbert_qkv(layer: nn.Module) -> tuple[nn.Module, ...]:
    return (layer.attn.Wqkv,)  # one module: q | k | v


def eurobert_qkv(layer: nn.Module) -> tuple[nn.Module, ...]:
    attention = layer.self_attn
    return attention.q_proj, attention.k_proj, attention.v_proj


class AttentionTap:
    """Keeps Q, K, V of `model`'s layer `layer` (an index into its layer stack; negative counts from the
    end) from its latest forward. `remove()` takes the hooks off."""

    def __init__(self, model: nn.Module, layer: int):
        from .adapters import encoder_adapter

        adapter = encoder_adapter(model)
        if adapter.qkv is None:
            raise ValueError(f"distilx does not know where {type(model).__name__} keeps its attention's Q/K/V "
                             "projections (the adapter table's architectures only: docs/pipeline.md)")
        stack = adapter.layers(model)
        if not -len(stack) <= layer < len(stack):
            raise ValueError(f"layer {layer} is outside {type(model).__name__}'s {len(stack)} layers "
                             f"(0..{len(stack) - 1}, or -1 for the last)")
        config = model.config
        heads = getattr(config, "num_attention_heads")
        self.groups = heads // (getattr(config, "num_key_value_heads", None) or heads)
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        self.layer = layer % len(stack)
        self._outputs: list[torch.Tensor | None] = []
        modules = adapter.qkv(stack[self.layer])
        self._outputs = [None] * len(modules)
        self._handles = [m.register_forward_hook(self._keeper(i)) for i, m in enumerate(modules)]

    def _keeper(self, index: int):
        def keep(module, args, output):
            if self._outputs[index] is None:  # the first call of a forward: the tokens' projection
                self._outputs[index] = output
        return keep

    def reset(self) -> None:
        """Forget the last forward's projections (call before the next forward)."""
        self._outputs = [None] * len(self._outputs)

    def qkv(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q, K, V of the latest forward since reset(), each [B, L, heads x head_dim]."""
        if any(out is None for out in self._outputs):
            raise RuntimeError(f"layer {self.layer}'s attention projections did not run since the last reset")
        if len(self._outputs) == 1:
            q, k, v = self._outputs[0].chunk(3, dim=-1)
        else:
            q, k, v = self._outputs
        if self.groups > 1:
            k, v = (self._repeat(t) for t in (k, v))
        return q, k, v

    def _repeat(self, t: torch.Tensor) -> torch.Tensor:
        """[B, L, kv x d] -> [B, L, kv x groups x d]: each key/value head once per query head of its group."""
        b, n, width = t.shape
        heads = t.view(b, n, width // self.head_dim, self.head_dim)
        return heads.repeat_interleave(self.groups, dim=2).reshape(b, n, -1)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
