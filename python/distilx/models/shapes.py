"""Student shapes: a student's width (hidden size, attention heads, intermediate size) beside its depth.

A student is built in two steps. The task builds it at the teacher's width with the kept layers copied
(`init_student`, `init_classifier_student`, ...: "the teacher's class with fewer layers"); then
`shaped_student` gives it the requested width, whatever its head (MLM, classification, QA, token
classification): `teacher` keeps it (refused when the width changes), `random` draws fresh weights of
the new shape, `weight-selection` keeps a consistent subset of its units (weight_selection.py).

What each architecture calls its sizes, which of them follow the hidden size, and how its attention is
laid out is in `WIDTH_LAYOUTS` (one entry per model type of the adapter table; the student's model type,
so a BERT teacher's DistilBERT student uses DistilBERT's names). The requested shape is checked before
anything is built: heads divide the hidden size, the architecture's head-size rules (RoPE rotates pairs
of head dims; grouped-query heads divide the query heads), and a `--student-config` file may change only
the shape (never the vocabulary, the positions or any other setting).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .defaults import SELECTIONS, STUDENT_INITS

__all__ = ["WidthLayout", "WIDTH_LAYOUTS", "ShapeRequest", "StudentShape", "layout_for", "shape_of", "target_config",
           "shaped_student", "model_shape", "requested_layers"]

@dataclass(frozen=True)
class WidthLayout:
    """How one architecture names and lays out its width.

    `axes`: (pattern, axes) rules for the tensors whose dims are not all hidden units — a pattern is
    matched (re.search) against the state-dict key, axes name each dim: "q" the query heads' dims
    (heads x head size, head-major), "kv" the key/value heads' dims (GQA), "3q" q|k|v stacked (a fused
    projection), "i" the intermediate units, "2i" two stacked halves of them (a GLU's input and gate),
    "h" hidden units, None a dim kept whole. Any other tensor's dims that change from the teacher's
    hidden size to the student's are hidden units (embeddings, LayerNorms, every head: weight_selection.py).
    """

    hidden: str = "hidden_size"
    heads: str = "num_attention_heads"
    intermediate: str = "intermediate_size"
    layers: str = "num_hidden_layers"
    kv_heads: str | None = None  # grouped-query attention: the key/value heads (EuroBERT)
    head_dim: str | None = None  # a head-size key of its own, set to hidden / heads (EuroBERT, DeBERTa's optional one)
    rotary: bool = False  # RoPE: a head's dims are rotated in pairs at per-pair frequencies
    follow_hidden: tuple[str, ...] = ()  # sizes that follow the hidden size when the teacher's equal it
    axes: tuple[tuple[str, tuple], ...] = ()

    @property
    def shape_keys(self) -> tuple[str, ...]:
        """The config keys a student's shape may change."""
        return tuple(k for k in (self.hidden, self.heads, self.intermediate, self.layers, self.kv_heads,
                                 self.head_dim, *self.follow_hidden) if k)


_BERT_AXES = (
    (r"attention\.self\.(query|key|value)\.weight$", ("q", "h")),
    (r"attention\.self\.(query|key|value)\.bias$", ("q",)),
    (r"attention\.output\.dense\.weight$", ("h", "q")),
    (r"intermediate\.dense\.weight$", ("i", "h")),
    (r"intermediate\.dense\.bias$", ("i",)),
    (r"\.\d+\.output\.dense\.weight$", ("h", "i")),
)
_DEBERTA_AXES = (
    (r"attention\.self\.(query|key|value|pos_key|pos_query)_proj\.weight$", ("q", "h")),
    (r"attention\.self\.(query|key|value|pos_key|pos_query)_proj\.bias$", ("q",)),
) + _BERT_AXES[2:]
_DISTILBERT_AXES = (
    (r"attention\.(q|k|v)_lin\.weight$", ("q", "h")),
    (r"attention\.(q|k|v)_lin\.bias$", ("q",)),
    (r"attention\.out_lin\.weight$", ("h", "q")),
    (r"ffn\.lin1\.weight$", ("i", "h")),
    (r"ffn\.lin1\.bias$", ("i",)),
    (r"ffn\.lin2\.weight$", ("h", "i")),
)
_MODERNBERT_AXES = (
    (r"attn\.Wqkv\.weight$", ("3q", "h")),
    (r"attn\.Wqkv\.bias$", ("3q",)),
    (r"attn\.Wo\.weight$", ("h", "q")),
    (r"mlp\.Wi\.weight$", ("2i", "h")),
    (r"mlp\.Wi\.bias$", ("2i",)),
    (r"mlp\.Wo\.weight$", ("h", "i")),
)
_EUROBERT_AXES = (
    (r"self_attn\.q_proj\.weight$", ("q", "h")),
    (r"self_attn\.q_proj\.bias$", ("q",)),
    (r"self_attn\.(k|v)_proj\.weight$", ("kv", "h")),
    (r"self_attn\.(k|v)_proj\.bias$", ("kv",)),
    (r"self_attn\.o_proj\.weight$", ("h", "q")),
    (r"mlp\.(gate|up)_proj\.weight$", ("i", "h")),
    (r"mlp\.(gate|up)_proj\.bias$", ("i",)),
    (r"mlp\.down_proj\.weight$", ("h", "i")),
)

_BERT = WidthLayout(axes=_BERT_AXES)
WIDTH_LAYOUTS: dict[str, WidthLayout] = {
    "bert": _BERT, "roberta": _BERT, "xlm-roberta": _BERT, "camembert": _BERT,
    # the generator's embeddings may be narrower than its hidden size (then they keep their width)
    "electra": WidthLayout(follow_hidden=("embedding_size",), axes=_BERT_AXES),
    "deberta-v2": WidthLayout(head_dim="attention_head_size", follow_hidden=("embedding_size", "pooler_hidden_size"),
                              axes=_DEBERTA_AXES),
    "distilbert": WidthLayout(hidden="dim", heads="n_heads", intermediate="hidden_dim", layers="n_layers",
                              axes=_DISTILBERT_AXES),
    "modernbert": WidthLayout(rotary=True, axes=_MODERNBERT_AXES),
    "eurobert": WidthLayout(kv_heads="num_key_value_heads", head_dim="head_dim", rotary=True, axes=_EUROBERT_AXES),
}


def layout_for(config) -> WidthLayout:
    """The width layout of a model's config; ValueError for a model type outside the table."""
    layout = WIDTH_LAYOUTS.get(getattr(config, "model_type", None))
    if layout is None:
        raise ValueError(f"model_type {getattr(config, 'model_type', None)!r} is served by distilx's generic entry, "
                         f"whose students keep the teacher's width: a narrower student needs one of "
                         f"{sorted(WIDTH_LAYOUTS)}")
    return layout


@dataclass(frozen=True)
class StudentShape:
    """A model's shape: layers, hidden size, query heads, key/value heads, head size, intermediate size."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int

    def describe(self) -> str:
        kv = f" ({self.kv_heads} key/value)" if self.kv_heads != self.heads else ""
        heads = f"{self.heads} head{'s' if self.heads != 1 else ''}"
        return (f"{self.layers} layers x {self.hidden} hidden, {heads}{kv} of {self.head_dim}, "
                f"{self.intermediate} intermediate")


def shape_of(config) -> StudentShape:
    layout = layout_for(config)
    hidden, heads = getattr(config, layout.hidden), getattr(config, layout.heads)
    head_dim = getattr(config, layout.head_dim, None) if layout.head_dim else None
    kv = getattr(config, layout.kv_heads) if layout.kv_heads else heads
    return StudentShape(getattr(config, layout.layers), hidden, heads, kv or heads, head_dim or hidden // heads,
                        getattr(config, layout.intermediate))


def model_shape(model: nn.Module) -> dict:
    """What `distilx eval` reports of a model's shape beside its layers: hidden, heads, intermediate (heads and
    intermediate None where the architecture is outside the width table)."""
    try:
        shape = shape_of(model.config)
    except ValueError:
        return {"hidden": getattr(model.config, "hidden_size", None), "heads": None, "intermediate": None}
    return {"hidden": shape.hidden, "heads": shape.heads, "intermediate": shape.intermediate}


@dataclass(frozen=True)
class ShapeRequest:
    """What the run asks for (TrainConfig's student_hidden / _heads / _intermediate, or student_config):
    None = the teacher's."""

    hidden: int | None = None
    heads: int | None = None
    intermediate: int | None = None
    config_file: str | None = None

    @classmethod
    def of(cls, config) -> "ShapeRequest":
        return cls(config.student_hidden, config.student_heads, config.student_intermediate, config.student_config)

    @property
    def empty(self) -> bool:
        return self == ShapeRequest()


# config.json entries that say nothing about what a model computes
_BOOKKEEPING = frozenset({"architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype",
                          "model_type", "distilx_teacher_layers", "distilx_student_init"})


def _read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"student_config {path} does not exist or is not a file: pass a config.json")
    try:
        declared = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"student_config {path}: not valid JSON ({exc.msg})") from None
    if not isinstance(declared, dict):
        raise ValueError(f"student_config {path}: a JSON {type(declared).__name__}, not a config object")
    return declared


def read_student_config(path: str | Path, config) -> dict:
    """The shape entries of a `--student-config` file (a config.json of the student's architecture); a
    ValueError names any other entry that differs from the student's (vocabulary, positions, activation...),
    since those would make it another model than a smaller one of the teacher."""
    declared = _read_json(path)
    model_type = declared.get("model_type", config.model_type)
    if model_type != config.model_type:
        raise ValueError(f"student_config {path} is a {model_type!r} config but this teacher's student is a "
                         f"{config.model_type!r} ({type(config).__name__}): give a config of that model type")
    layout = layout_for(config)
    current = config.to_dict()
    unknown = sorted(k for k in declared if k not in current and k not in _BOOKKEEPING and k not in layout.shape_keys)
    if unknown:
        raise ValueError(f"student_config {path}: {unknown} {'is not a setting' if len(unknown) == 1 else 'are not settings'} "
                         f"of {type(config).__name__}")
    changed = sorted(k for k, v in declared.items() if k not in _BOOKKEEPING and k not in layout.shape_keys
                     and current.get(k) != v)
    if changed:
        shown = ", ".join(f"{k}={declared[k]!r} (the teacher's: {current.get(k)!r})" for k in changed[:4])
        raise ValueError(f"student_config {path} changes {shown}: a student keeps the teacher's vocabulary, positions "
                         f"and every setting but its shape ({', '.join(layout.shape_keys)}); remove the others")
    shape = {k: v for k, v in declared.items() if k in layout.shape_keys}
    bad = {k: v for k, v in shape.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1}
    if bad:  # checked here: the shape arithmetic that follows would fail on a string with a TypeError
        raise ValueError(f"student_config {path}: {', '.join(f'{k}={v!r}' for k, v in bad.items())} must be "
                         f"{'an integer' if len(bad) == 1 else 'integers'} >= 1")
    return shape


def _kv_heads_for(heads: int, teacher: StudentShape) -> int:
    """The fewest key/value heads that divide the query heads into groups no larger than the teacher's
    (its group size when it divides the student's heads)."""
    group = teacher.heads // teacher.kv_heads
    for kv in range(max(1, -(-heads // group)), heads + 1):
        if heads % kv == 0:
            return kv
    return heads


def _resolve(config, request: ShapeRequest) -> tuple[dict, StudentShape]:
    """(config values to set, the target shape) from the request and the full-width student's config."""
    layout = layout_for(config)
    full = shape_of(config)
    values = read_student_config(request.config_file, config) if request.config_file else {}
    hidden = values.get(layout.hidden, request.hidden or full.hidden)
    heads = values.get(layout.heads, request.heads)
    if heads is None:
        if hidden == full.hidden:
            heads = full.heads
        elif hidden % full.head_dim == 0:  # keep the teacher's head size
            heads = hidden // full.head_dim
        else:
            raise ValueError(f"student hidden size {hidden} is not a multiple of the teacher's head size "
                             f"{full.head_dim}: give the student's heads too (--student-heads)")
    intermediate = values.get(layout.intermediate, request.intermediate or full.intermediate)
    for name, value in (("hidden size", hidden), ("heads", heads), ("intermediate size", intermediate)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"student {name} {value!r} must be an integer >= 1")
    if hidden % heads:
        fits = [h for h in (hidden - hidden % heads, hidden + heads - hidden % heads) if h > 0]
        divisors = [d for d in range(heads - 1, 0, -1) if hidden % d == 0][:1]
        raise ValueError(f"student hidden size {hidden} is not a multiple of its {heads} attention heads: the heads "
                         f"split the hidden units evenly (head size = hidden / heads); choose a hidden size of e.g. "
                         f"{' or '.join(map(str, fits))}, or {divisors[0]} heads")
    head_dim = hidden // heads
    if layout.rotary and head_dim % 2:
        raise ValueError(f"student head size {hidden} / {heads} = {head_dim} is odd, but {config.model_type}'s rotary "
                         "position embedding rotates pairs of head dims: choose an even head size")
    kv = heads
    if layout.kv_heads:
        kv = values.get(layout.kv_heads, full.kv_heads if heads == full.heads else _kv_heads_for(heads, full))
        if not isinstance(kv, int) or kv < 1 or heads % kv:
            raise ValueError(f"student key/value heads {kv!r} must divide its {heads} query heads (grouped-query "
                             f"attention); set {layout.kv_heads} in --student-config")
    out = {layout.hidden: hidden, layout.heads: heads, layout.intermediate: intermediate}
    if layout.kv_heads:
        out[layout.kv_heads] = kv
    if layout.head_dim and values.get(layout.head_dim, head_dim) != head_dim:
        raise ValueError(f"student_config sets {layout.head_dim}={values[layout.head_dim]} but its hidden size {hidden} / "
                         f"{heads} heads = {head_dim}: distilx's students keep head size = hidden / heads")
    if layout.head_dim and getattr(config, layout.head_dim, None) is not None:
        out[layout.head_dim] = head_dim
    for key in layout.follow_hidden:
        value = getattr(config, key, None)
        if key in values:
            out[key] = values[key]
        elif value == full.hidden:
            out[key] = hidden
    if layout.layers in values:
        out[layout.layers] = values[layout.layers]
    return out, StudentShape(out.get(layout.layers, full.layers), hidden, heads, kv, head_dim, intermediate)


def target_config(config, request: ShapeRequest):
    """A copy of the full-width student's `config` with the requested shape (checked, see the module doc)."""
    values, shape = _resolve(config, request)
    if layout_for(config).layers in values and shape.layers != shape_of(config).layers:
        raise ValueError(f"student_config sets {layout_for(config).layers}={shape.layers} but the student keeps "
                         f"{shape_of(config).layers} layers (student_layers / student_layer_indices): make them agree")
    new = copy.deepcopy(config)
    for key, value in values.items():
        setattr(new, key, value)
    return new


def requested_layers(request: ShapeRequest) -> int | None:
    """The layer count a `--student-config` file declares (num_hidden_layers, or DistilBERT's n_layers), read
    before the student is built; None when it declares none. target_config checks it against the student."""
    if not request.config_file:
        return None
    path = request.config_file
    declared = _read_json(path)
    value = declared.get("num_hidden_layers", declared.get("n_layers"))
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"student_config {path}: the layer count {value!r} must be an integer >= 1")
    return value


def shaped_student(student: nn.Module, request: ShapeRequest, *, init: str = "teacher", selection: str = "uniform",
                   seed: int = 0) -> nn.Module:
    """`student` (the teacher's width, its kept layers copied; any head) given the requested shape:
    init "teacher" keeps it (a ValueError if the shape changes), "random" draws fresh weights of the new
    shape seeded by `seed`, "weight-selection" keeps a consistent subset of its units chosen by `selection`
    ("uniform" or "importance"; weight_selection.py). fp32, train mode."""
    if init not in STUDENT_INITS:
        raise ValueError(f"student_init={init!r}; choose one of {STUDENT_INITS}")
    if selection not in SELECTIONS:
        raise ValueError(f"student_selection={selection!r}; choose one of {SELECTIONS}")
    if request.empty and init == "teacher":
        return student
    config = target_config(student.config, request) if not request.empty else copy.deepcopy(student.config)
    full, target = shape_of(student.config), shape_of(config)
    if init == "teacher":
        if target != full:
            raise ValueError(f"student_init='teacher' copies the teacher's layers whole, so the student keeps the "
                             f"teacher's width ({full.describe()}), not {target.describe()}: use --student-init "
                             "weight-selection (a sub-network of the teacher) or random")
        return student
    config.distilx_student_init = init if init == "random" else f"{init}:{selection}"
    if init == "random":
        torch.manual_seed(seed)
        return type(student)(config).float().train()
    from .weight_selection import select_weights

    return select_weights(student, config, selection=selection).float().train()
