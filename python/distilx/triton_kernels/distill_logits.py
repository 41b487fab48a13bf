"""Fused temperature-KL + masked-LM cross-entropy over [N, V] logits: Triton kernels + launcher.

The launcher runs the configuration `tuning.select` picks for the device and shape (a committed table, a
cached run-time tuning, or this file's first kernel by default): the kernel below ("rowwise", kept as the
reference and fallback) or the streaming one of distill_logits_stream.py ("stream", "split").

The rowwise kernel: one program per row, two passes over the row:
  pass 1 reads the student and teacher row once with an online (running max, running sum) softmax in
         fp32: log-sum-exp of s/T and t/T, sum p_t (t - s)/T, and (rows with a label) the T = 1
         log-sum-exp of s; it writes the row's KL and CE.
  pass 2 (only when the student needs a gradient) re-reads the row, mostly from L2, and writes
         d total / d s = c_kl (softmax(s/T) - softmax(t/T)) + c_ce (softmax(s) - onehot(label)),
         formed in fp32 and rounded once to the student dtype.
Rows in neither selection read nothing and write a zero gradient row. The scales c_kl = alpha_kl*T/n_kl
and c_ce = alpha_mlm/n_mlm come from device memory, so nothing here synchronises with the host.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ..losses.defaults import IGNORE_INDEX

# Launcher configurations: (BLOCK_V, num_warps). Vocabularies up to 2048 (chemistry/protein/byte
# vocabularies) use the small block; everything else the large one. `compile_check` enumerates these.
SMALL_CONFIG = (1024, 4)
LARGE_CONFIG = (4096, 8)
CONFIGS = (SMALL_CONFIG, LARGE_CONFIG)
MAX_VOCAB = 262_144


def config_for(vocab: int) -> tuple[int, int]:
    return SMALL_CONFIG if vocab <= 2048 else LARGE_CONFIG


@triton.jit
def distill_logits_kernel(
    student_ptr,  # [N, V] student logits (fp32/fp16/bf16), unit column stride
    teacher_ptr,  # [N, V] teacher logits (fp32/fp16/bf16), unit column stride
    labels_ptr,  # [N] int64 label per row, IGNORE_INDEX = not an MLM target
    kl_mask_ptr,  # [N] bool: row counted in the KL term
    grad_scales_ptr,  # [2] fp64: (alpha_kl*T/n_kl, alpha_mlm/n_mlm)
    kl_rows_ptr,  # [N] fp32 out: KL(softmax(t/T) ‖ softmax(s/T)) of the row, 0 if not selected
    ce_rows_ptr,  # [N] fp32 out: cross-entropy of the row at T = 1, 0 if no label
    grad_ptr,  # [N, V] out (student dtype): d total / d student logits (only if WRITE_GRAD)
    student_row_stride,  # elements between rows of student
    teacher_row_stride,  # elements between rows of teacher
    grad_row_stride,  # elements between rows of grad
    vocab,  # V
    inv_temperature,  # 1/T (fp32)
    HAS_KL: tl.constexpr,  # alpha_kl > 0
    HAS_CE: tl.constexpr,  # alpha_mlm > 0
    WRITE_GRAD: tl.constexpr,  # the student logits need a gradient
    IGNORE: tl.constexpr,  # IGNORE_INDEX
    BLOCK_V: tl.constexpr,  # columns per step
):
    row = tl.program_id(0).to(tl.int64)  # int64: row * stride overflows int32 at N*V > 2^31
    s_row = student_ptr + row * student_row_stride
    t_row = teacher_ptr + row * teacher_row_stride
    cols = tl.arange(0, BLOCK_V)
    neg_inf = float("-inf")

    label = tl.load(labels_ptr + row)
    kl_on = (tl.load(kl_mask_ptr + row) != 0) & HAS_KL
    ce_on = (label != IGNORE) & HAS_CE

    # running statistics (fp32): student at T, teacher at T (+ sum e^(t/T - m_t) (t - s)/T), student at 1.
    # Started as fp32 tensors (not Python floats) so the runtime `if` below yields one type on every triton.
    zero = tl.sum(tl.zeros([BLOCK_V], dtype=tl.float32), axis=0)
    m_s = zero + neg_inf
    z_s = zero
    m_t = zero + neg_inf
    z_t = zero
    a_t = zero
    m_1 = zero + neg_inf
    z_1 = zero
    if kl_on | ce_on:
        for start in range(0, vocab, BLOCK_V):
            offs = start + cols
            inside = offs < vocab
            s = tl.load(s_row + offs, mask=inside, other=0.0).to(tl.float32)
            if HAS_KL:
                if kl_on:
                    t = tl.load(t_row + offs, mask=inside, other=0.0).to(tl.float32)
                    ss = tl.where(inside, s * inv_temperature, neg_inf)
                    tt = tl.where(inside, t * inv_temperature, neg_inf)
                    m_s_new = tl.maximum(m_s, tl.max(ss, axis=0))
                    z_s = z_s * tl.exp(m_s - m_s_new) + tl.sum(tl.exp(ss - m_s_new), axis=0)
                    m_s = m_s_new
                    m_t_new = tl.maximum(m_t, tl.max(tt, axis=0))
                    rescale = tl.exp(m_t - m_t_new)
                    e_t = tl.exp(tt - m_t_new)
                    z_t = z_t * rescale + tl.sum(e_t, axis=0)
                    a_t = a_t * rescale + tl.sum(tl.where(inside, e_t * (tt - ss), 0.0), axis=0)
                    m_t = m_t_new
            if HAS_CE:
                if ce_on:
                    s1 = tl.where(inside, s, neg_inf)
                    m_1_new = tl.maximum(m_1, tl.max(s1, axis=0))
                    z_1 = z_1 * tl.exp(m_1 - m_1_new) + tl.sum(tl.exp(s1 - m_1_new), axis=0)
                    m_1 = m_1_new

    lse_s = m_s + tl.log(z_s)
    lse_t = m_t + tl.log(z_t)
    lse_1 = m_1 + tl.log(z_1)
    if HAS_KL:
        # KL = sum p_t (t - s)/T - lse_t + lse_s, because sum p_t = 1
        kl = a_t / z_t - lse_t + lse_s
        tl.store(kl_rows_ptr + row, tl.where(kl_on, kl, 0.0))
    valid_label = (label >= 0) & (label < vocab)
    if HAS_CE:
        s_label = tl.load(s_row + tl.where(valid_label & ce_on, label, 0)).to(tl.float32)
        # an out-of-range label (only possible when validation was skipped) gives NaN, never a wrong value
        ce = tl.where(valid_label, lse_1 - s_label, float("nan"))
        tl.store(ce_rows_ptr + row, tl.where(ce_on, ce, 0.0))

    if WRITE_GRAD:
        g_row = grad_ptr + row * grad_row_stride
        c_kl = tl.load(grad_scales_ptr).to(tl.float32)
        c_ce = tl.load(grad_scales_ptr + 1).to(tl.float32)
        if kl_on | ce_on:
            for start in range(0, vocab, BLOCK_V):
                offs = start + cols
                inside = offs < vocab
                s = tl.load(s_row + offs, mask=inside, other=0.0).to(tl.float32)
                g = tl.zeros([BLOCK_V], dtype=tl.float32)
                if HAS_KL:
                    if kl_on:
                        t = tl.load(t_row + offs, mask=inside, other=0.0).to(tl.float32)
                        p_s = tl.exp(s * inv_temperature - lse_s)
                        p_t = tl.exp(t * inv_temperature - lse_t)
                        g = c_kl * (p_s - p_t)
                if HAS_CE:
                    if ce_on:
                        p_1 = tl.exp(s - lse_1)
                        g = g + c_ce * (p_1 - tl.where(offs == label, 1.0, 0.0))
                tl.store(g_row + offs, g.to(grad_ptr.dtype.element_ty), mask=inside)
        else:
            # a row with no contribution: write its zero gradient without reading the logits
            for start in range(0, vocab, BLOCK_V):
                offs = start + cols
                tl.store(g_row + offs, tl.zeros([BLOCK_V], dtype=grad_ptr.dtype.element_ty), mask=offs < vocab)


def fused_logits_loss(
    student: torch.Tensor,  # [N, V], unit column stride
    teacher: torch.Tensor,  # [N, V], unit column stride
    labels: torch.Tensor,  # [N] int64
    kl_mask: torch.Tensor,  # [N] bool
    grad_scales: torch.Tensor,  # [2] fp64
    temperature: float,
    has_kl: bool,
    has_ce: bool,
    write_grad: bool,
    grad_buffer: torch.Tensor | None = None,
    config=None,
):
    """Launcher with the same contract as `losses.chunked.chunked_logits_loss` (fp32 per-row values).

    grad_buffer may be `student` itself: a program reads each block of its row before writing that block's
    gradient, and rows never overlap (the split kernel's programs of one row write only their own columns,
    after every sibling has read them or after reading the whole row themselves). config: a
    `tuning.KernelConfig`; None = `tuning.select` (table, cache, run-time tuning, or the default).
    """
    n_rows, vocab = student.shape
    if vocab > MAX_VOCAB:
        raise ValueError(f"the Triton loss supports vocabularies up to {MAX_VOCAB}, got V={vocab}; use backend='torch'")
    kl_rows = torch.zeros(n_rows, dtype=torch.float32, device=student.device)
    ce_rows = torch.zeros(n_rows, dtype=torch.float32, device=student.device)
    grad = None
    if write_grad:
        grad = torch.empty_like(student, memory_format=torch.contiguous_format) if grad_buffer is None else grad_buffer
    if n_rows == 0:
        return kl_rows, ce_rows, grad
    if config is None:
        from .tuning import select

        config = select(student, teacher, write_grad)
    launch(config, student, teacher, labels, kl_mask, grad_scales, kl_rows, ce_rows, grad, temperature, has_kl,
           has_ce, write_grad)
    return kl_rows, ce_rows, grad


def alignment(*tensors) -> int:
    """Elements per 16 bytes (of the narrowest dtype) when every tensor starts 16-byte aligned and their row
    strides agree modulo that count (so one column offset aligns every row of all of them); else 1."""
    tensors = [t for t in tensors if t is not None]
    align = 16 // min(t.element_size() for t in tensors)
    if any(t.data_ptr() % 16 for t in tensors):
        return 1
    strides = {t.stride(0) % align for t in tensors}
    return align if len(strides) == 1 else 1


# SPLIT programs that wait longer than this many polls for a sibling read the whole row themselves. The
# interpreter runs programs one after another: a sibling never arrives while one waits, so it gives up at once.
SPIN_LIMIT = 2 if os.environ.get("TRITON_INTERPRET") == "1" else 1 << 16


def launch(config, student, teacher, labels, kl_mask, grad_scales, kl_rows, ce_rows, grad, temperature, has_kl,
           has_ce, write_grad, spin_limit=None) -> None:
    """Run `config` (a tuning.KernelConfig) on the tensors; outputs go to kl_rows, ce_rows and grad."""
    spin_limit = SPIN_LIMIT if spin_limit is None else spin_limit
    n_rows, vocab = student.shape
    common = dict(HAS_KL=has_kl, HAS_CE=has_ce, WRITE_GRAD=write_grad, IGNORE=IGNORE_INDEX,
                  num_warps=config.num_warps)
    grad_arg = grad if write_grad else student  # never written when WRITE_GRAD is False
    grad_stride = grad.stride(0) if write_grad else 0
    if config.kernel == "rowwise":  # launched exactly as before the tuning existed (Triton's default stages)
        distill_logits_kernel[(n_rows,)](
            student, teacher, labels, kl_mask, grad_scales, kl_rows, ce_rows, grad_arg, student.stride(0),
            teacher.stride(0), grad_stride, vocab, 1.0 / temperature, BLOCK_V=config.block_v, **common)
        return
    common["num_stages"] = config.num_stages
    from .distill_logits_stream import WHOLE_ROW, next_power_of_2, stream_kernel

    align = alignment(student, teacher, grad if write_grad else None)
    if config.group % align:
        align = 1  # the tiles' GROUP-column groups must start on the 16-byte boundaries the hints promise
    tiles_per_chunk = config.chunk_v // config.block_v if config.kernel == "split" else WHOLE_ROW
    max_tiles = triton.cdiv(vocab + align - 1, config.block_v)
    n_chunks = triton.cdiv(max_tiles, tiles_per_chunk)
    if write_grad and grad.data_ptr() == student.data_ptr():
        # in place: a split program that timed out reads the whole row while siblings overwrite theirs
        n_chunks = 1
    split = n_chunks > 1
    if not split:
        tiles_per_chunk = WHOLE_ROW
    stats = torch.empty(n_rows * n_chunks * 8 if split else 1, dtype=torch.float32, device=student.device)
    count = torch.zeros(n_rows if split else 1, dtype=torch.int32, device=student.device)
    stream_kernel[(n_rows * n_chunks,)](
        student, teacher, labels, kl_mask, grad_scales, kl_rows, ce_rows, grad_arg, stats, count, student.stride(0),
        teacher.stride(0), grad_stride, vocab, 1.0 / temperature, n_chunks, spin_limit,
        ROWS=config.block_v // config.group, GROUP=config.group, ALIGN=align, SPLIT=split,
        # the most programs a row of this configuration can have: one compile per configuration, not per V
        TILES_PER_CHUNK=tiles_per_chunk, CHUNKS_POW2=next_power_of_2(triton.cdiv(MAX_VOCAB + 16, tiles_per_chunk *
                                                                                 config.block_v)) if split else 1,
        **common)
