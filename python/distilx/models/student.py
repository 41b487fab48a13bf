"""`init_student`: a shallower copy of a masked-LM teacher, initialised from the layers it keeps.

A BERT teacher gives a `DistilBertForMaskedLM` (DistilBERT's own mapping, docs/recipe.md); a RoBERTa
(XLM-R, CamemBERT) teacher gives its own class with fewer layers. Kept layers default to
round(linspace(0, L-1, n)), i.e. [0, 2, 4, 7, 9, 11] for 12 -> 6. Which builder serves which
architecture is in the adapter table (`adapters.py`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from .adapters import UnsupportedModelError, adapter_for, supported_teachers
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


def _tied(model: nn.Module) -> bool:
    """Is the vocabulary projection the word-embedding matrix (same storage or same values)?"""
    out, inp = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    return out is inp or (out.shape == inp.shape and torch.equal(out, inp))


def init_student(teacher, n_layers: int | None = None, layers: list[int] | None = None) -> nn.Module:
    """Build a shallower student from `teacher` (a BertForMaskedLM / RobertaForMaskedLM or a folder).

    n_layers: how many layers the student keeps (default: half the teacher's, rounded up);
    layers: the teacher layer indices to copy, in order (overrides n_layers).
    Returns a DistilBertForMaskedLM (BERT teacher) or the teacher's class (RoBERTa family) in fp32,
    train mode. The vocabulary projection stays tied to the word embeddings exactly when it is tied in
    the teacher; otherwise the teacher's decoder is copied into an untied projector.
    """
    if isinstance(teacher, (str, Path)):
        teacher = load_teacher(teacher)
    adapter = adapter_for(teacher)
    if adapter.build_student is None:
        raise UnsupportedModelError(f"unsupported teacher {type(teacher).__name__}: init_student takes a "
                                    f"{supported_teachers()} (object or local folder)")
    layers = kept_layers(len(adapter.layers(teacher)), n_layers, layers)
    with torch.no_grad():
        student = adapter.build_student(teacher, layers, _tied(teacher), adapter)
    student.config.distilx_teacher_layers = layers  # provenance, saved in config.json
    return student.float().train()
