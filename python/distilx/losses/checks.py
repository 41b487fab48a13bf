"""Validation shared by the loss entry points: options, tensors, backend choice, label range.

Every message names the problem and the fix. Only `labels_out_of_range` reads data (a host sync on CUDA).
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


def labels_out_of_range(labels: torch.Tensor, vocab: int) -> bool:
    """The one validation that reads data (a host sync); skipped while a CUDA graph is captured."""
    if labels.is_cuda and torch.cuda.is_current_stream_capturing():
        return False
    bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= vocab))
    return bool(bad.any())
