"""Fused 1 - cos(h_s, h_t) per row with its gradient formed in the forward: Triton kernel + launcher.

cos = <a, b> / sqrt(A B), A = |a|^2 + eps, B = |b|^2 + eps (CosineEmbeddingLoss's form);
d(1 - cos)/d a = -(b / sqrt(A B) - cos * a / A). Hidden sizes are small (<= 16384 here), so one block
holds a whole row: one read of each input, one write of the gradient.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..losses.defaults import COS_EPS

MAX_HIDDEN = 16_384


def config_for(hidden: int) -> tuple[int, int]:
    """(BLOCK_H, num_warps): one power-of-two block per row, more warps for wider rows."""
    block = max(128, triton.next_power_of_2(hidden))
    return block, (4 if block <= 2048 else 8 if block <= 8192 else 16)


# every configuration `config_for` can return, for the ahead-of-time compile check
CONFIGS = tuple(sorted({config_for(h) for h in (1, 256, 512, 1024, 2048, 4096, 8192, MAX_HIDDEN)}))


@triton.jit
def cosine_kernel(
    student_ptr,  # [N, H] student hidden states (fp32/fp16/bf16), contiguous
    teacher_ptr,  # [N, H] teacher hidden states, contiguous
    row_mask_ptr,  # [N] bool: real token
    grad_scale_ptr,  # [] fp64: alpha_cos / n_real
    rows_ptr,  # [N] fp32 out: 1 - cos of the row, 0 if not real
    grad_ptr,  # [N, H] out (student dtype): d total / d student hidden (only if WRITE_GRAD)
    hidden,  # H
    eps,  # COS_EPS
    WRITE_GRAD: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_H)
    inside = offs < hidden
    real = tl.load(row_mask_ptr + row) != 0  # padding rows: values (even NaN) are read but discarded
    a = tl.load(student_ptr + row * hidden + offs, mask=inside, other=0.0).to(tl.float32)
    b = tl.load(teacher_ptr + row * hidden + offs, mask=inside, other=0.0).to(tl.float32)
    sq_a = tl.sum(a * a, axis=0) + eps
    sq_b = tl.sum(b * b, axis=0) + eps
    inv_norm = 1.0 / tl.sqrt(sq_a * sq_b)
    cos = tl.sum(a * b, axis=0) * inv_norm
    tl.store(rows_ptr + row, tl.where(real, 1.0 - cos, 0.0))
    if WRITE_GRAD:
        scale = tl.load(grad_scale_ptr).to(tl.float32)
        g = -scale * (b * inv_norm - a * (cos / sq_a))
        g = tl.where(real, g, 0.0)
        tl.store(grad_ptr + row * hidden + offs, g.to(grad_ptr.dtype.element_ty), mask=inside)


def fused_cosine_loss(
    student_hidden: torch.Tensor,  # [N, H] contiguous
    teacher_hidden: torch.Tensor,  # [N, H] contiguous
    row_mask: torch.Tensor,  # [N] bool
    grad_scale: torch.Tensor,  # [] fp64
    write_grad: bool,
):
    """Launcher with the contract of `losses.chunked.cosine_rows` (fp32 per-row values)."""
    n_rows, hidden = student_hidden.shape
    if hidden > MAX_HIDDEN:
        raise ValueError(f"the Triton cosine loss supports hidden sizes up to {MAX_HIDDEN}, got {hidden}; use backend='torch'")
    rows = torch.zeros(n_rows, dtype=torch.float32, device=student_hidden.device)
    grad = torch.empty_like(student_hidden) if write_grad else None
    if n_rows == 0:
        return rows, grad
    block, num_warps = config_for(hidden)
    cosine_kernel[(n_rows,)](
        student_hidden,
        teacher_hidden,
        row_mask,
        grad_scale,
        rows,
        grad if write_grad else student_hidden,  # never written when WRITE_GRAD is False
        hidden,
        COS_EPS,
        WRITE_GRAD=write_grad,
        BLOCK_H=block,
        num_warps=num_warps,
    )
    return rows, grad
