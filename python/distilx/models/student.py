"""`init_student`: a shallower copy of a masked-LM teacher, initialised from the layers it keeps.

A BERT teacher gives a `DistilBertForMaskedLM` (DistilBERT's own mapping, docs/recipe.md) unless
student_class="same"; every other architecture gives its own class with fewer layers. Kept layers
default to round(linspace(0, L-1, n)), i.e. [0, 2, 4, 7, 9, 11] for 12 -> 6. Which builder serves
which architecture is in the adapter table (`adapters.py`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from .adapters import adapter_for
from .builders import same_class_fewer_layers
from .defaults import STUDENT_CLASSES
from .loading import load_teacher

__all__ = ["init_student", "kept_layers", "student_layer_indices"]


def student_layer_indices(teacher_layers: int, n_layers: int) -> list[int]:
    """round(linspace(0, L-1, n)) with halves rounded up: 12 -> 6 gives [0, 2, 4, 7, 9, 11]."""
    if not 1 <= n_layers <= teacher_layers:
        raise ValueError(f"n_layers={n_layers} must be between 1 and the teacher's {teacher_layers} layers")
    if n_layers == 1:
        return [0]
    step = (teacher_layers - 1) / (n_layers - 1)
    return [int(math.floor(i * step + 0.5)) for i in range(n_layers)]


def kept_layers(total: int, n_layers: int | None, layers: list[int] | None) -> list[int]:
    """The teacher layers a student keeps: `layers` checked against the teacher's `total`, else
    `n_layers` (default: half, rounded up) spread by student_layer_indices."""
    if layers is None:
        return student_layer_indices(total, n_layers if n_layers is not None else (total + 1) // 2)
    layers = [int(i) for i in layers]
    if n_layers is not None and n_layers != len(layers):
        raise ValueError(f"n_layers={n_layers} disagrees with layers={layers}; pass one of them")
    if not layers or any(not 0 <= i < total for i in layers):
        raise ValueError(f"layers={layers} must be a non-empty list of indices in [0, {total - 1}]")
    return layers


def _tied(model: nn.Module, adapter) -> bool:
    """Is the vocabulary projection the word-embedding matrix (same storage or same values)?"""
    out, inp = adapter.decoder(model)[0], model.get_input_embeddings().weight
    return out is inp or (out.shape == inp.shape and torch.equal(out, inp))


def init_student(teacher, n_layers: int | None = None, layers: list[int] | None = None,
                 student_class: str = "auto", *, hidden: int | None = None, heads: int | None = None,
                 intermediate: int | None = None, student_config: str | None = None, init: str = "teacher",
                 selection: str = "uniform", seed: int = 0) -> nn.Module:
    """Build a student from a masked-LM `teacher` (a model or a local folder) of any supported
    architecture (docs/pipeline.md).

    n_layers: how many layers the student keeps (default: half the teacher's, rounded up);
    layers: the teacher layer indices to copy, in order (overrides n_layers);
    student_class: "auto" (BERT -> DistilBertForMaskedLM, every other architecture its own class) or
    "same" (the teacher's own class, BERT included).
    hidden, heads, intermediate (or student_config, a config.json): a narrower shape (None: the teacher's),
    made by `init`: "teacher" (the teacher's width only), "weight-selection" (a sub-network of the teacher,
    units chosen by `selection`: "uniform" or "importance") or "random" (fresh weights seeded by `seed`);
    models/shapes.py, models/weight_selection.py.
    Returns the student in fp32, train mode; its config is the teacher's with the layer count, the shape
    and the per-layer settings of the kept layers. The vocabulary projection stays tied to the word
    embeddings exactly when it is tied in the teacher; otherwise the teacher's decoder is copied untied.
    """
    from .shapes import ShapeRequest, requested_layers, shaped_student

    request = ShapeRequest(hidden, heads, intermediate, student_config)
    if n_layers is None and layers is None:
        n_layers = requested_layers(request)
    if student_class not in STUDENT_CLASSES:
        raise ValueError(f"student_class={student_class!r}; choose one of {STUDENT_CLASSES}")
    if isinstance(teacher, (str, Path)):
        teacher = load_teacher(teacher)
    adapter = adapter_for(teacher)
    build = adapter.build_student if student_class == "auto" else same_class_fewer_layers
    layers = kept_layers(len(adapter.layers(teacher)), n_layers, layers)
    with torch.no_grad():
        student = build(teacher, layers, _tied(teacher, adapter), adapter)
    student.config.distilx_teacher_layers = layers  # provenance, saved in config.json
    return shaped_student(student.float().train(), request, init=init, selection=selection, seed=seed)
