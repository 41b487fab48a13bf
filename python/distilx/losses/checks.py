"""Validation shared by the loss entry points: options, tensors, backend choice, label range.

Every message names the problem and the fix (`distillation_loss` and `fused_linear_distillation_loss`). Only `labels_out_of_range` reads data (a host sync on CUDA).
"""

from __future__ import annotations

import math
import os

import torch

from .defaults import BACKENDS, IGNORE_INDEX, KL_ON_CHOICES

TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_weight(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (0 switches the term off), got {value}")
    return value


def check_options(temperature, alpha_kl, alpha_mlm, alpha_cos, kl_on, backend):
    temperature = check_weight("temperature", temperature)
    if temperature == 0:
        raise ValueError("temperature must be > 0 (DistilBERT uses 2.0)")
    if kl_on not in KL_ON_CHOICES:
        raise ValueError(f"kl_on must be one of {KL_ON_CHOICES}, got {kl_on!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return (
        temperature,
        check_weight("alpha_kl", alpha_kl),
        check_weight("alpha_mlm", alpha_mlm),
        check_weight("alpha_cos", alpha_cos),
    )


def resolve_backend(backend: str, tensors) -> str:
    on_cuda = tensors[0].is_cuda
    if backend == "auto":
        return "triton" if on_cuda else "torch"
    if backend == "triton":
        if not on_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(
                "backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 to run the kernels on the CPU "
                "interpreter); use backend='torch' or 'auto' for CPU tensors"
            )
        for t in tensors:
            if t.dtype not in TRITON_DTYPES:
                raise TypeError(
                    f"backend='triton' supports float32, float16 and bfloat16 tensors, got {t.dtype}; "
                    "use backend='torch' for other dtypes"
                )
    return backend


def check_tensor(name, t, *, floating):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if floating and not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32/float16/bfloat16), got {t.dtype}")


def check_row_tensors(rows_shape, source: str, labels, attention_mask, student_hidden, teacher_hidden,
                      alpha_cos: float) -> bool:
    """Checks labels and attention_mask against the rows of `source` (its leading shape) and the hidden
    states against each other; returns whether the cosine term runs (hidden states given, alpha_cos > 0).
    Tensors are checked whatever alpha_cos is (a malformed one is an error even when its term is off), but
    different widths only matter to the cosine: a narrower student trains with alpha_cos = 0."""
    check_tensor("labels", labels, floating=False)
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor (int64 token ids, -100 = ignore), got {labels.dtype}")
    if labels.shape != rows_shape:
        raise ValueError(f"labels shape {tuple(labels.shape)} must equal the leading shape {tuple(rows_shape)} of {source}")
    if attention_mask is not None:
        check_tensor("attention_mask", attention_mask, floating=False)
        if attention_mask.shape != rows_shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} must equal the leading shape {tuple(rows_shape)} "
                f"of {source}"
            )
    if (student_hidden is None) != (teacher_hidden is None):
        raise ValueError("pass both student_hidden and teacher_hidden, or neither (then the cosine term is 0)")
    if student_hidden is None:
        return False
    check_tensor("student_hidden", student_hidden, floating=True)
    check_tensor("teacher_hidden", teacher_hidden, floating=True)
    if student_hidden.dim() < 2 or student_hidden.shape[:-1] != teacher_hidden.shape[:-1]:
        raise ValueError(
            f"student_hidden and teacher_hidden must be [*, H] with the same leading shape (rows); got "
            f"{tuple(student_hidden.shape)} and {tuple(teacher_hidden.shape)}"
        )
    if alpha_cos > 0 and student_hidden.shape[-1] != teacher_hidden.shape[-1]:
        raise ValueError(
            f"hidden sizes differ (student H={student_hidden.shape[-1]}, teacher H={teacher_hidden.shape[-1]}); "
            "the cosine term needs equal sizes: project one side first, or set alpha_cos=0"
        )
    return alpha_cos > 0


def labels_out_of_range(labels: torch.Tensor, vocab: int) -> bool:
    """The one validation that reads data (a host sync); skipped while a CUDA graph is captured."""
    if labels.is_cuda and torch.cuda.is_current_stream_capturing():
        return False
    bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= vocab))
    return bool(bad.any())
