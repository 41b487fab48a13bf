"""MiniLMv2's self-attention relation distillation loss as one call: validation, backend dispatch, autograd.

    total = QQ + KK + VV,   XX = mean over relation heads r and real queries i of KL(P_t[r, i] ‖ P_s[r, i])

Each side's [B, L, H] projection (the attention's query, key or value projection of one layer, before
the split into attention heads) is re-split into R relation heads of d_r = H / R columns (the student with
its own d_r), relation P[r] = softmax(A_r A_rᵀ / √d_r) per row over the real keys. Teacher and student
widths, head counts and dtypes may differ; B, L and the mask are shared.

Both backends (the Triton kernels in `distilx.triton_kernels.relation`, the chunked PyTorch path in
`losses/relation_chunked.py`) form the student's gradient during the forward without ever holding all
[B, R, L, L] relations; the backward only scales it (`autograd.scale_stored_grad`).

Documented edge cases (each has a test):
* padding (attention_mask == 0) is excluded as keys (out of both softmaxes) and as queries (not
  averaged); its values, even NaN, are never read into a result, and it gets a zero gradient;
* a batch without real tokens gives terms of exactly 0;
* the teacher never receives a gradient (its tensors are detached constants);
* a second backward through one forward raises (the stored gradient is scaled in place; float64 excepted).
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import torch

from .autograd import _outside_autocast, scale_stored_grad
from .checks import TRITON_DTYPES, check_tensor, resolve_backend
from .defaults import BACKENDS, RELATION_HEADS
from .relation_chunked import chunked_relation_kl

__all__ = ["relation_distillation_loss", "RelationLossOutput"]

_TERMS = ("q", "k", "v")


class RelationLossOutput(NamedTuple):
    """loss: qq + kk + vv (differentiable w.r.t. the student projections). qq, kk, vv: the terms, detached."""

    loss: torch.Tensor
    qq: torch.Tensor
    kk: torch.Tensor
    vv: torch.Tensor


def relation_distillation_loss(
    student_q: torch.Tensor,
    student_k: torch.Tensor,
    student_v: torch.Tensor,
    teacher_q: torch.Tensor,
    teacher_k: torch.Tensor,
    teacher_v: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    relation_heads: int | None = None,
    backend: str = "auto",
) -> RelationLossOutput:
    """MiniLMv2's Q-Q + K-K + V-V relation KL. Returns RelationLossOutput(loss, qq, kk, vv).

    student_*: [B, L, H_s] projections of one student layer; teacher_*: [B, L, H_t] of one teacher layer
    (no gradient). Widths may differ between the three and between the sides; dtypes too.
    attention_mask: [B, L], nonzero = real token; None = every token is real.
    relation_heads: R, which must divide every width; None = RELATION_HEADS (12). Pass the teacher's
    attention-head count (MiniLMv2's default) when it is known.
    backend: "auto" (Triton for CUDA tensors, PyTorch otherwise; also for float64 or relation heads wider
    than 256 columns on CUDA), "triton" or "torch".
    """
    heads = check_relation_heads(relation_heads)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    students, teachers = (student_q, student_k, student_v), (teacher_q, teacher_k, teacher_v)
    shape = check_relation_tensors(students, teachers, attention_mask, heads)
    tensors = [*students, *teachers] + ([attention_mask] if attention_mask is not None else [])
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    requested, backend = backend, resolve_backend(backend, [*students, *teachers])
    if requested == "auto" and backend == "triton" and not _triton_handles(students, teachers, heads):
        backend = "torch"  # float64, or relation heads wider than the kernels' blocks: the PyTorch path
    real = (torch.ones(shape, dtype=torch.bool, device=student_q.device) if attention_mask is None
            else (attention_mask != 0).contiguous())
    qq, kk, vv = (RelationKL.apply(s, t.detach(), real, heads, backend) for s, t in zip(students, teachers))
    return RelationLossOutput(qq + kk + vv, qq.detach(), kk.detach(), vv.detach())


def check_relation_heads(relation_heads) -> int:
    """R: RELATION_HEADS when None, else a positive int (bools refused)."""
    if relation_heads is None:
        return RELATION_HEADS
    if isinstance(relation_heads, bool):
        raise TypeError(f"relation_heads must be a positive int, got {relation_heads!r}")
    try:
        heads = operator.index(relation_heads)
    except TypeError:
        raise TypeError(f"relation_heads must be a positive int, got {type(relation_heads).__name__}") from None
    if heads < 1:
        raise ValueError(f"relation_heads must be >= 1, got {heads}")
    return heads


def check_relation_tensors(students, teachers, attention_mask, heads: int) -> torch.Size:
    """Checks the six projections and the mask; returns their shared [B, L]."""
    shape = None
    for term, student, teacher in zip(_TERMS, students, teachers):
        for side, x in (("student", student), ("teacher", teacher)):
            name = f"{side}_{term}"
            check_tensor(name, x, floating=True)
            if x.dim() != 3:
                raise ValueError(f"{name} must be [B, L, H] (batch, length, projection width), got shape {tuple(x.shape)}")
            if shape is None:
                shape = x.shape[:2]
            elif x.shape[:2] != shape:
                raise ValueError(
                    f"{name} is [B, L] = {tuple(x.shape[:2])} but student_q is {tuple(shape)}; every projection "
                    "must come from the same batch"
                )
            if x.shape[-1] % heads:
                raise ValueError(
                    f"{name} has width {x.shape[-1]}, not divisible by relation_heads={heads}; pick relation_heads "
                    "dividing both models' widths (e.g. the teacher's attention-head count)"
                )
    if attention_mask is not None:
        check_tensor("attention_mask", attention_mask, floating=False)
        if attention_mask.shape != shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} must be [B, L] = {tuple(shape)}, the projections' "
                "leading shape"
            )
    return shape


def _triton_handles(students, teachers, heads: int) -> bool:
    """Whether the Triton kernels take these projections (dtypes, relation-head widths)."""
    from ..triton_kernels.relation import MAX_HEAD_DIM

    tensors = [*students, *teachers]
    return all(t.dtype in TRITON_DTYPES and t.shape[-1] // heads <= MAX_HEAD_DIM for t in tensors)


def relation_impl(backend: str):
    """The per-row relation KL of a backend (contract: `relation_chunked.chunked_relation_kl`)."""
    if backend == "triton":
        from ..triton_kernels.relation import fused_relation_kl

        return fused_relation_kl
    return chunked_relation_kl


class RelationKL(torch.autograd.Function):
    """One relation term, mean over relation heads and real queries of KL(teacher ‖ student).

    The gradient w.r.t. the student projection is formed in the forward and scaled by grad_output in the
    backward (once per forward; float64 excepted). The teacher gets none.
    """

    @staticmethod
    @_outside_autocast
    def forward(ctx, student, teacher, real, heads, backend):
        # 1 / (R n) stays on the device (no host sync); fp64 so fp64 inputs keep full precision
        grad_scale = 1.0 / (real.sum().clamp_min(1).double() * heads)
        write_grad = ctx.needs_input_grad[0]
        student = student if student.stride(-1) == 1 else student.contiguous()
        teacher = teacher if teacher.stride(-1) == 1 else teacher.contiguous()
        kl_rows, grad = relation_impl(backend)(student, teacher, real, heads, grad_scale, write_grad)
        ctx.save_for_backward(grad if write_grad else None)
        return (kl_rows.sum() * grad_scale).to(kl_rows.dtype)

    @staticmethod
    def backward(ctx, grad_term):
        return scale_stored_grad(ctx, grad_term), None, None, None, None
