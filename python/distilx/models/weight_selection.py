"""Weight selection: a narrower student that starts as a sub-network of its teacher, not from noise.

`select_weights(model, config)` builds `type(model)(config)` (a narrower shape, shapes.py) and fills
every tensor with the matching tensor of `model` (the full-width student: the kept teacher layers and
everything outside them, any head) restricted to one consistent choice of units:

- hidden units: one subset of the residual stream, the same in every tensor that reads or writes it —
  the embeddings (word, position, token type) and their LayerNorm, every layer's projections and norms,
  the MLM head (transform and decoder) or the classifier / QA / token head, DeBERTa's relative-position
  embeddings;
- attention: per layer, whole heads (the same heads in Q, K, V and the output projection's input); when
  the student's head size is smaller (architectures without rotary positions only), a subset of each kept
  head's dims, the same for Q, K and V. Grouped-query attention (EuroBERT) keeps whole key/value heads and,
  within each, query heads of that group only;
- intermediate units: per layer, the same units in the up projection (GLU: input and gate) and the down one.

Units are chosen `uniform` (evenly spaced: unit floor(j * n / k) for j < k; every layer keeps the same
heads and units) or by `importance`: a hidden unit by the sum over every tensor that holds it of its L2
norm there (each tensor's norms divided by their mean, so no tensor dominates by scale); a head (and a
head dim) by the L2 norm of its columns in that layer's attention output projection; an intermediate
unit by the product of the L2 norms of its row in the up projection(s) and its column in the down
projection. The kept units keep their order. Selecting every unit reproduces the model exactly.

The student is not the teacher's function at step 0 when hidden units are dropped: a LayerNorm (or RMSNorm)
normalises over the kept units only, and the dropped units' contributions to every dot product are gone.
docs/narrow_students.md gives measured numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from .adapters import encoder_adapter
from .shapes import StudentShape, WidthLayout, layout_for, shape_of

__all__ = ["select_weights", "evenly_spaced"]


def evenly_spaced(n: int, k: int) -> list[int]:
    """k of range(n), evenly spaced from 0: floor(j * n / k)."""
    return [j * n // k for j in range(k)]


def _pick(n: int, k: int, scores: torch.Tensor | None) -> list[int]:
    if scores is None or k == n:
        return evenly_spaced(n, k)
    order = torch.argsort(scores.double(), descending=True, stable=True)
    return sorted(order[:k].tolist())


def _check_selectable(full: StudentShape, target: StudentShape, layout: WidthLayout, model_type: str) -> None:
    if target.layers != full.layers:
        raise ValueError(f"weight selection keeps the student's {full.layers} layers; the shape asks for {target.layers}")
    for name, s, t in (("hidden size", target.hidden, full.hidden), ("attention heads", target.heads, full.heads),
                       ("key/value heads", target.kv_heads, full.kv_heads), ("head size", target.head_dim, full.head_dim),
                       ("intermediate size", target.intermediate, full.intermediate)):
        if s > t:
            raise ValueError(f"weight selection keeps a subset of the teacher's units, but the student's {name} {s} "
                             f"exceeds the teacher's {t}: choose at most {t}, or --student-init random")
    if layout.rotary and target.head_dim != full.head_dim:
        raise ValueError(f"{model_type} rotates each head's dims in pairs at fixed frequencies, so weight selection keeps "
                         f"whole heads of the teacher's head size {full.head_dim}, not {target.head_dim}: give "
                         f"--student-heads {max(1, target.hidden // full.head_dim)} for hidden {target.hidden} (a "
                         f"multiple of {full.head_dim}), or --student-init random")
    group_s, group_t = target.heads // target.kv_heads, full.heads // full.kv_heads
    if group_s > group_t:
        raise ValueError(f"each key/value head would serve {group_s} query heads in the student but serves {group_t} in "
                         f"the teacher: weight selection keeps query heads within their own group; use at least "
                         f"{-(-target.heads // group_t)} key/value heads (num_key_value_heads in --student-config)")


def _axes(key: str, source: torch.Tensor, dest: torch.Tensor, layout: WidthLayout, full: StudentShape,
          target: StudentShape) -> tuple:
    """Which units each dim of tensor `key` holds (see WidthLayout): the layout's rule, else hidden units
    where the size goes from the teacher's hidden size to the student's, else kept whole."""
    for pattern, axes in layout.axes:
        if re.search(pattern, key):
            return axes
    axes = []
    for dim, (a, b) in enumerate(zip(source.shape, dest.shape)):
        if a == b:
            axes.append(None)
        elif a == full.hidden and b == target.hidden:
            axes.append("h")
        else:
            raise ValueError(f"weight selection cannot map {key}: its dim {dim} holds {a} units in the teacher and {b} "
                             "in the student, neither the hidden size nor a unit distilx knows for this architecture; "
                             "use --student-init random for this shape")
    return tuple(axes)


def _unit_norms(tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """L2 norm of each slice along `dim` (its units)."""
    t = tensor.detach().double()
    return t.pow(2).sum(dim=[d for d in range(t.ndim) if d != dim]).sqrt() if t.ndim > 1 else t.abs()


@dataclass
class _Plan:
    hidden: list[int]
    layers: dict[int, dict[str, list[int]]] = field(default_factory=dict)

    def indices(self, axis: str, layer: int | None, key: str) -> torch.Tensor:
        if axis == "h":
            chosen = self.hidden
        elif layer is None:
            raise ValueError(f"weight selection: {key} has per-layer units ({axis}) but lies outside the layer stack")
        else:
            chosen = self.layers[layer][axis]
        return torch.tensor(chosen, dtype=torch.long)


def _layer_plan(n_layer: dict[str, torch.Tensor], full: StudentShape, target: StudentShape, importance: bool) -> dict:
    """One layer's chosen units: "q" (query heads' dims), "kv", "3q", "i", "2i"."""
    d, g_t, g_s = full.head_dim, full.heads // full.kv_heads, target.heads // target.kv_heads
    unit = n_layer.get("out") if importance else None  # per query-unit norm of the output projection's columns
    head = None if unit is None else unit.view(full.heads, d).pow(2).sum(-1).sqrt()
    kv_heads = _pick(full.kv_heads, target.kv_heads, None if head is None else head.view(full.kv_heads, g_t).sum(-1))
    heads = []
    for kv in kv_heads:
        members = list(range(kv * g_t, (kv + 1) * g_t))
        heads += [members[j] for j in _pick(g_t, g_s, None if head is None else head[members])]
    dims = {h: _pick(d, target.head_dim, None if unit is None else unit[h * d:(h + 1) * d]) for h in heads}
    q = [h * d + j for h in heads for j in dims[h]]
    # GQA has whole heads only (rotary): a key/value head's dims are all kept; without GQA kv heads = query heads
    kv = q if g_t == 1 else [k * d + j for k in kv_heads for j in range(d)]
    a_t, i_t = full.heads * d, full.intermediate
    inter = _pick(i_t, target.intermediate, n_layer.get("inter") if importance else None)
    return {"q": q, "kv": kv, "3q": q + [a_t + u for u in q] + [2 * a_t + u for u in q],
            "i": inter, "2i": inter + [i_t + u for u in inter]}


def _importance(source: dict, axes: dict, layer_of) -> tuple[torch.Tensor, dict[int, dict[str, torch.Tensor]]]:
    """(hidden-unit scores, per layer {"out": query-unit scores, "inter": intermediate-unit scores})."""
    hidden, per_layer = None, {}
    for key, tensor_axes in axes.items():
        tensor = source[key]
        layer = layer_of(key)
        for dim, axis in enumerate(tensor_axes):
            norms = _unit_norms(tensor, dim)
            if axis == "h":
                scaled = norms / norms.mean() if norms.mean() > 0 else norms
                hidden = scaled if hidden is None else hidden + scaled
            elif axis == "q" and tensor.ndim == 2 and dim == 1:  # the output projection's input: a head's output
                per_layer.setdefault(layer, {})["out"] = norms
            elif axis in ("i", "2i") and tensor.ndim == 2:
                if axis == "2i":
                    norms = norms.view(2, -1).pow(2).sum(0).sqrt()
                entry = per_layer.setdefault(layer, {})
                entry["inter"] = norms if "inter" not in entry else entry["inter"] * norms
    return hidden, per_layer


def _stack_prefix(model: nn.Module) -> str:
    stack = encoder_adapter(model).layers(model)
    return next(name for name, module in model.named_modules() if module is stack) + "."


def select_weights(model: nn.Module, config, *, selection: str = "uniform") -> nn.Module:
    """`type(model)(config)` filled with `model`'s tensors restricted to the selected units (module doc)."""
    layout = layout_for(model.config)
    full, target = shape_of(model.config), shape_of(config)
    _check_selectable(full, target, layout, model.config.model_type)
    with torch.no_grad():
        student = type(model)(config)
    source, dest = model.state_dict(), student.state_dict()
    missing, extra = sorted(set(dest) - set(source)), sorted(set(source) - set(dest))
    if missing or extra:
        what = f"has {missing[0]}, which the teacher lacks" if missing else f"lacks the teacher's {extra[0]}"
        raise ValueError(f"weight selection: a {type(model).__name__} of this shape {what} (the shape changes the "
                         "architecture, e.g. an embedding size that stops or starts differing from the hidden size), "
                         "so it is not a sub-network of the teacher; choose another shape or --student-init random")
    prefix = _stack_prefix(model)

    def layer_of(key: str) -> int | None:
        return int(key[len(prefix):].split(".", 1)[0]) if key.startswith(prefix) else None

    axes = {key: _axes(key, source[key], dest[key], layout, full, target) for key in dest}
    importance = selection == "importance"
    hidden_scores, layer_scores = _importance(source, axes, layer_of) if importance else (None, {})
    plan = _Plan(_pick(full.hidden, target.hidden, hidden_scores))
    for layer in range(full.layers):
        plan.layers[layer] = _layer_plan(layer_scores.get(layer, {}), full, target, importance)
    state = {}
    for key, tensor_axes in axes.items():
        tensor = source[key]
        for dim, axis in enumerate(tensor_axes):
            if axis is not None:
                tensor = tensor.index_select(dim, plan.indices(axis, layer_of(key), key).to(tensor.device))
        if tensor.shape != dest[key].shape:
            raise ValueError(f"weight selection: {key} comes out {tuple(tensor.shape)} but the student's is "
                             f"{tuple(dest[key].shape)} (rule {tensor_axes})")
        state[key] = tensor
    student.load_state_dict(state, strict=True)
    return student
