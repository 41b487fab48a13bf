"""Fused MiniLMv2 relation KL (one relation type, e.g. Q-Q) with its student gradient: Triton kernels + launcher.

For sequence b and relation head r: A = the student's [L, d_s] columns of head r, T = the teacher's
[L, d_t], S = A Aᵀ/√d_s, U = T Tᵀ/√d_t, padding keys out of both softmaxes, P = row softmax,
    KL_i = Σ_j P_t[i,j] (U_ij − S_ij) − lse_t(i) + lse_s(i)        (Σ_j P_t[i,j] = 1)
    d term / d A = c/√d_s · (G + Gᵀ) A,   G = P_s − P_t on real (query, key) pairs,  c = 1 / (R n).
No L × L matrix is ever stored; one program owns BLOCK_M query rows of one (b, r) pair.

* `relation_kl_fwd_kernel` walks the key blocks with an online (running max, running sum) softmax for
  both sides, flash-attention style, and writes the rows' KL and both log-sum-exps (fp32, [B, R, L]).
* `relation_kl_grad_kernel` walks the key blocks again and accumulates row block i of (G + Gᵀ) A.
  S and U are symmetric, so Gᵀ's block (i, j) is G's block (j, i) formed from the SAME S_ij / U_ij and the
  KEY rows' log-sum-exps: exp(S_ij − lse_s(j)) − exp(U_ij − lse_t(j)). Each program therefore owns its
  output rows (no atomics, no second pass for the "A as key" half): one pass each way.
Both run inside the autograd forward (the house's contract: the gradient is formed in the forward, the
backward only scales it). Inputs are read in their dtypes; products accumulate in fp32 (fp32 inputs use
IEEE fp32 dots, not TF32). For bf16/fp16 students G enters the tensor-core product G A as two halves in
the student's dtype (hi + lo, 16 significant bits in bf16) where flash-attention casts its dS once.
Padding rows are loaded as zeros, so their values (even NaN) never count.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

MAX_HEAD_DIM = 256  # d_r per side; wider relation heads would not fit a block in registers: backend="torch"
_MIN_DOT = 16  # tl.dot needs every dimension >= 16


def config_for(d_student: int, d_teacher: int, fp32_dot: bool) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps) for relation heads of d_student / d_teacher columns; fp32_dot: either side
    is fp32 (IEEE dots on CUDA cores need smaller blocks). Chosen with `ptxas -v` (tests/compile_check.py's
    tools) for sm_80 and sm_90: no spill for 16-bit heads up to 64 columns, at most 40 bytes elsewhere."""
    widest = max(d_student, d_teacher)
    if fp32_dot:
        return (32, 32, 4) if widest <= 64 else (16, 32, 4) if widest <= 128 else (16, 16, 4)
    if widest <= 32:
        return 64, 64, 4
    return (64, 32, 4) if widest <= 64 else (32, 32, 4) if widest <= 128 else (32, 16, 4)


def head_block(d: int) -> int:
    """Columns of one relation head, padded to a power of two >= 16 (the padding reads as zeros)."""
    return max(_MIN_DOT, triton.next_power_of_2(d))


# every (BLOCK_M, BLOCK_N, num_warps, head block, fp32_dot) the launcher can choose, for the compile check
CONFIGS = tuple(sorted({(*config_for(d, d, fp32), head_block(d), fp32)
                        for d in (16, 32, 64, 128, MAX_HEAD_DIM) for fp32 in (False, True)}))


@triton.jit
def _head_rows(ptr, batch_offset, rows, row_stride, col0, cols, width, keep):
    """[len(rows), len(cols)] block of one relation head's columns; rows not kept (padding, past L) read 0."""
    offs = batch_offset + rows[:, None].to(tl.int64) * row_stride + col0 + cols[None, :]
    return tl.load(ptr + offs, mask=keep[:, None] & (cols[None, :] < width), other=0.0)


@triton.jit
def _program_rows(length, heads, BLOCK_M: tl.constexpr):
    """(pair = b * R + r, b, r, rows): the (sequence, relation head) and the query rows of this program."""
    n_row_blocks = tl.cdiv(length, BLOCK_M)
    pid = tl.program_id(0)
    pair = pid // n_row_blocks
    rows = (pid % n_row_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    return pair, (pair // heads).to(tl.int64), pair % heads, rows


@triton.jit
def _token_block(student_ptr, teacher_ptr, real_ptr, b, r, tokens, length, s_batch_stride, s_row_stride,
                 t_batch_stride, t_row_stride, d_s, d_t, D_S: tl.constexpr, D_T: tl.constexpr):
    """(inside L, real, student block, teacher block) of sequence b's `tokens` in relation head r."""
    inside = tokens < length
    real = (tl.load(real_ptr + b * length + tokens, mask=inside, other=0) != 0) & inside
    a = _head_rows(student_ptr, b * s_batch_stride, tokens, s_row_stride, r * d_s, tl.arange(0, D_S), d_s, real)
    t = _head_rows(teacher_ptr, b * t_batch_stride, tokens, t_row_stride, r * d_t, tl.arange(0, D_T), d_t, real)
    return inside, real, a, t


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b accumulated in fp32. UPCAST (bf16 under TRITON_INTERPRET=1 only): the interpreter multiplies
    bf16 bit patterns in tl.dot (triton-lang/triton#11584), so the operands go through fp32 first, which
    is exact (a bf16 product fits fp32) and computes what the GPU's bf16 dot computes."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _relation_scores(x_rows, x_keys, scale, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    return _dot(x_rows, tl.trans(x_keys), PRECISION, UPCAST) * scale


@triton.jit
def relation_kl_fwd_kernel(
    student_ptr,  # [B, L, H_s] (fp32/fp16/bf16), unit column stride
    teacher_ptr,  # [B, L, H_t], unit column stride
    real_ptr,  # [B, L] bool, contiguous: real token
    kl_rows_ptr,  # [B, R, L] fp32 out: KL of the row (0 for padding)
    lse_s_ptr,  # [B, R, L] fp32 out: log-sum-exp of the student's relation row (0 for padding)
    lse_t_ptr,  # [B, R, L] fp32 out: the teacher's
    s_batch_stride, s_row_stride, t_batch_stride, t_row_stride,
    length, heads, d_s, d_t,
    scale_s,  # 1/√d_s
    scale_t,  # 1/√d_t
    D_S: tl.constexpr, D_T: tl.constexpr,  # head blocks (powers of two >= 16)
    S_PRECISION: tl.constexpr, T_PRECISION: tl.constexpr,  # "ieee" for fp32 inputs
    S_UPCAST: tl.constexpr, T_UPCAST: tl.constexpr,  # bf16 under the interpreter: see _dot
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pair, b, r, rows = _program_rows(length, heads, BLOCK_M)
    row_in, row_real, a_i, t_i = _token_block(student_ptr, teacher_ptr, real_ptr, b, r, rows, length, s_batch_stride,
                                              s_row_stride, t_batch_stride, t_row_stride, d_s, d_t, D_S, D_T)

    neg_inf = float("-inf")
    m_s = tl.full([BLOCK_M], neg_inf, tl.float32)  # running max of the student's row
    z_s = tl.zeros([BLOCK_M], tl.float32)  # running sum of exp(S - m_s)
    m_t = tl.full([BLOCK_M], neg_inf, tl.float32)
    z_t = tl.zeros([BLOCK_M], tl.float32)
    a_t = tl.zeros([BLOCK_M], tl.float32)  # running sum of exp(U - m_t) (U - S)
    for start in range(0, length, BLOCK_N):
        keys = start + tl.arange(0, BLOCK_N)
        key_in, key_real, a_j, t_j = _token_block(student_ptr, teacher_ptr, real_ptr, b, r, keys, length,
                                                  s_batch_stride, s_row_stride, t_batch_stride, t_row_stride,
                                                  d_s, d_t, D_S, D_T)
        valid = key_real[None, :]
        s = tl.where(valid, _relation_scores(a_i, a_j, scale_s, S_PRECISION, S_UPCAST), neg_inf)
        u = tl.where(valid, _relation_scores(t_i, t_j, scale_t, T_PRECISION, T_UPCAST), neg_inf)
        # a block of padding keys leaves the max at -inf: subtract 0 instead (exp(-inf) = 0, no NaN)
        m_s_new = tl.maximum(m_s, tl.max(s, axis=1))
        m_s_safe = tl.where(m_s_new == neg_inf, 0.0, m_s_new)
        z_s = z_s * tl.exp(m_s - m_s_safe) + tl.sum(tl.exp(s - m_s_safe[:, None]), axis=1)
        m_s = m_s_new
        m_t_new = tl.maximum(m_t, tl.max(u, axis=1))
        m_t_safe = tl.where(m_t_new == neg_inf, 0.0, m_t_new)
        rescale = tl.exp(m_t - m_t_safe)
        e_t = tl.exp(u - m_t_safe[:, None])
        z_t = z_t * rescale + tl.sum(e_t, axis=1)
        a_t = a_t * rescale + tl.sum(tl.where(valid, e_t * (u - s), 0.0), axis=1)
        m_t = m_t_new

    # a real query always has one real key (itself), so its sums are > 0; padding rows store 0
    log_z_s = tl.log(z_s)
    log_z_t = tl.log(z_t)
    # KL = Σ p_t (U − S) − lse_t + lse_s, grouped so that the large terms cancel first: Σ p_t (U − S) and
    # m_t − m_s are both about U − S at the maxima (a one-token sequence gives exactly 0, as it should)
    kl = (a_t / z_t - (m_t - m_s)) + (log_z_s - log_z_t)
    lse_s = m_s + log_z_s
    lse_t = m_t + log_z_t
    out = pair.to(tl.int64) * length + rows
    tl.store(kl_rows_ptr + out, tl.where(row_real, kl, 0.0), mask=row_in)
    tl.store(lse_s_ptr + out, tl.where(row_real, lse_s, 0.0), mask=row_in)
    tl.store(lse_t_ptr + out, tl.where(row_real, lse_t, 0.0), mask=row_in)


@triton.jit
def relation_kl_grad_kernel(
    student_ptr, teacher_ptr, real_ptr,  # as in relation_kl_fwd_kernel
    lse_s_ptr, lse_t_ptr,  # [B, R, L] fp32 from relation_kl_fwd_kernel
    grad_scale_ptr,  # [] fp64: c = 1 / (R n)
    grad_ptr,  # [B, L, H_s] out (student dtype), contiguous: d term / d student
    s_batch_stride, s_row_stride, t_batch_stride, t_row_stride,
    length, heads, d_s, d_t, scale_s, scale_t,
    D_S: tl.constexpr, D_T: tl.constexpr,
    S_PRECISION: tl.constexpr, T_PRECISION: tl.constexpr,
    S_UPCAST: tl.constexpr, T_UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pair, b, r, rows = _program_rows(length, heads, BLOCK_M)
    row_in, row_real, a_i, t_i = _token_block(student_ptr, teacher_ptr, real_ptr, b, r, rows, length, s_batch_stride,
                                              s_row_stride, t_batch_stride, t_row_stride, d_s, d_t, D_S, D_T)
    stats = pair.to(tl.int64) * length
    lse_s_i = tl.load(lse_s_ptr + stats + rows, mask=row_in, other=0.0)
    lse_t_i = tl.load(lse_t_ptr + stats + rows, mask=row_in, other=0.0)

    acc = tl.zeros([BLOCK_M, D_S], tl.float32)
    for start in range(0, length, BLOCK_N):
        keys = start + tl.arange(0, BLOCK_N)
        key_in, key_real, a_j, t_j = _token_block(student_ptr, teacher_ptr, real_ptr, b, r, keys, length,
                                                  s_batch_stride, s_row_stride, t_batch_stride, t_row_stride,
                                                  d_s, d_t, D_S, D_T)
        lse_s_j = tl.load(lse_s_ptr + stats + keys, mask=key_in, other=0.0)
        lse_t_j = tl.load(lse_t_ptr + stats + keys, mask=key_in, other=0.0)
        s = _relation_scores(a_i, a_j, scale_s, S_PRECISION, S_UPCAST)
        u = _relation_scores(t_i, t_j, scale_t, T_PRECISION, T_UPCAST)
        g_query = tl.exp(s - lse_s_i[:, None]) - tl.exp(u - lse_t_i[:, None])  # G[i, j]: row i's softmaxes
        g_key = tl.exp(s - lse_s_j[None, :]) - tl.exp(u - lse_t_j[None, :])  # G[j, i]: row j's, same S_ij
        # padding pairs (lse 0: their exps may overflow) are selected away, never multiplied
        g = tl.where(row_real[:, None] & key_real[None, :], g_query + g_key, 0.0)
        # 16-bit students: G as a hi + lo pair of the student's dtype (16 significant bits instead of 8 in
        # bf16; G's rows sum to 0, so one rounding of G shows up ~1% in a gradient made of cancelling terms)
        g_hi = g.to(a_j.dtype)
        acc += _dot(g_hi, a_j, S_PRECISION, S_UPCAST)
        if a_j.dtype != tl.float32:
            acc += _dot((g - g_hi.to(tl.float32)).to(a_j.dtype), a_j, S_PRECISION, S_UPCAST)

    c = tl.load(grad_scale_ptr).to(tl.float32) * scale_s
    cols = tl.arange(0, D_S)
    offs = b * length * heads * d_s + rows[:, None].to(tl.int64) * (heads * d_s) + r * d_s + cols[None, :]
    tl.store(grad_ptr + offs, (acc * c).to(grad_ptr.dtype.element_ty), mask=row_in[:, None] & (cols[None, :] < d_s))


def _precision(dtype: torch.dtype) -> str:
    """IEEE fp32 dots for fp32 inputs (TF32 would shift the relations by ~1e-3); tensor cores otherwise."""
    return "ieee" if dtype == torch.float32 else "tf32"


def _upcast(dtype: torch.dtype) -> bool:
    return dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1"


def fused_relation_kl(
    student: torch.Tensor,  # [B, L, H_s], unit column stride
    teacher: torch.Tensor,  # [B, L, H_t], unit column stride
    real: torch.Tensor,  # [B, L] bool, contiguous
    heads: int,
    grad_scale: torch.Tensor,  # [] fp64: 1 / (R n)
    write_grad: bool,
    blocks: tuple[int, int] | None = None,
):
    """Launcher with the contract of `losses.relation_chunked.chunked_relation_kl` (fp32 per-row KL).

    blocks: (BLOCK_M, BLOCK_N) instead of `config_for`'s (tests: several blocks on tiny lengths).
    """
    batch, length, width = student.shape
    d_s, d_t = width // heads, teacher.shape[-1] // heads
    if max(d_s, d_t) > MAX_HEAD_DIM:
        raise ValueError(
            f"the Triton relation loss supports relation heads of up to {MAX_HEAD_DIM} columns, got d_r = "
            f"{max(d_s, d_t)}; use more relation_heads or backend='torch'"
        )
    kl_rows = torch.zeros(batch, heads, length, dtype=torch.float32, device=student.device)
    grad = torch.zeros_like(student, memory_format=torch.contiguous_format) if write_grad else None
    if batch * length == 0:
        return kl_rows, grad
    block_m, block_n, num_warps = config_for(d_s, d_t, torch.float32 in (student.dtype, teacher.dtype))
    if blocks is not None:
        block_m, block_n = blocks
    lse_s = torch.empty_like(kl_rows)
    lse_t = torch.empty_like(kl_rows)
    grid = (triton.cdiv(length, block_m) * batch * heads,)
    strides = (student.stride(0), student.stride(1), teacher.stride(0), teacher.stride(1))
    shape = (length, heads, d_s, d_t, 1.0 / math.sqrt(d_s), 1.0 / math.sqrt(d_t))
    meta = dict(D_S=head_block(d_s), D_T=head_block(d_t), S_PRECISION=_precision(student.dtype),
                T_PRECISION=_precision(teacher.dtype), S_UPCAST=_upcast(student.dtype),
                T_UPCAST=_upcast(teacher.dtype), BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps)
    relation_kl_fwd_kernel[grid](student, teacher, real, kl_rows, lse_s, lse_t, *strides, *shape, **meta)
    if write_grad:
        relation_kl_grad_kernel[grid](student, teacher, real, lse_s, lse_t, grad_scale, grad, *strides, *shape, **meta)
    return kl_rows, grad
