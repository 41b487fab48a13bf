"""The distillation loss in plain PyTorch, chunked: the CPU path (and the GPU fallback) of `distillation_loss`.

Rows are processed in chunks and the student-logit gradient is formed during the forward (like the
Triton kernel), so the backward only scales it and peak extra memory stays near the size of that
gradient. Both functions return per-row values; `losses/autograd.py` turns them into the terms.
Semantics: docs/losses.md; the oracle they are tested against: `losses/reference.py`.
"""

from __future__ import annotations

import torch

from .defaults import COS_EPS, IGNORE_INDEX

# Chunk sizing of the PyTorch path. Up to 5 fp32 temporaries of one chunk are alive at once (6 are
# counted, for allocator slack); together they stay below ~15% of the logits' own size (the gradient
# buffer is the other 100% of the 1.3x budget), and each stays <= 4M elements so the passes run in cache.
_LIVE_TEMPORARIES = 6
_EXTRA_FRACTION = 0.15
_MAX_CHUNK_ELEMENTS = 1 << 22


def chunk_rows_for(n_rows: int, vocab: int, element_size: int) -> int:
    """Rows per chunk so the chunk's fp32 temporaries stay under ~15% of the logits' size."""
    by_memory = int(n_rows * element_size * _EXTRA_FRACTION / (4 * _LIVE_TEMPORARIES))
    by_cache = _MAX_CHUNK_ELEMENTS // max(vocab, 1)
    return max(1, min(n_rows, by_memory, by_cache))


def chunked_logits_loss(
    student: torch.Tensor,  # [N, V] student logits, any float dtype, rows contiguous
    teacher: torch.Tensor,  # [N, V] teacher logits, any float dtype
    labels: torch.Tensor,  # [N] int64, IGNORE_INDEX = not a target
    kl_mask: torch.Tensor,  # [N] bool, rows counted in the KL term
    grad_scales: torch.Tensor,  # [2] fp64: (alpha_kl*T/n_kl, alpha_mlm/n_mlm), multiplies the gradient rows
    temperature: float,
    has_kl: bool,
    has_ce: bool,
    write_grad: bool,
    gather_rows: bool | None = None,
    grad_buffer: torch.Tensor | None = None,
):
    """Per-row KL(softmax(t/T) ‖ softmax(s/T)) and CE(s, label), plus d(total)/d(student) if asked.

    Returns (kl_rows [N], ce_rows [N] (fp32, or fp64 for fp64 input), grad [N, V] in the student's
    dtype or None). Rows outside a term's selection contribute exactly 0 to it (their values, even NaN,
    are ignored) and get a 0 gradient row. Labels outside [0, V) give a NaN CE (validation raises earlier).
    Each gradient row is formed in fp32 (KL and CE parts summed) and rounded once.

    gather_rows: compute the CE only on the rows that carry a label (~15%), found with nonzero();
    that is a host sync, so it is the default on CPU only (None = "on CPU"). Both modes are tested.
    grad_buffer: [N, V] tensor (student dtype, rows contiguous) that receives the gradient instead of a new
    one; it may be `student` itself (each chunk is read completely before its gradient is written), which is
    how the fused-linear loss (losses/fused_linear.py) keeps one buffer per projected chunk.
    """
    n_rows, vocab = student.shape
    compute_dtype = torch.promote_types(student.dtype, torch.float32)
    if gather_rows is None:
        gather_rows = student.device.type == "cpu"
    # per-row values in fp32 (fp64 for fp64 inputs, so gradcheck sees full precision)
    kl_rows = torch.zeros(n_rows, dtype=compute_dtype, device=student.device)
    ce_rows = torch.zeros(n_rows, dtype=compute_dtype, device=student.device)
    grad = None
    if write_grad:
        grad = torch.empty_like(student, memory_format=torch.contiguous_format) if grad_buffer is None else grad_buffer
    if n_rows == 0:
        return kl_rows, ce_rows, grad
    c_kl = grad_scales[0].to(compute_dtype)
    c_ce = grad_scales[1].to(compute_dtype)
    inv_t = 1.0 / temperature
    step = chunk_rows_for(n_rows, vocab, student.element_size())

    for r0 in range(0, n_rows, step):
        r1 = min(r0 + step, n_rows)
        s = student[r0:r1].to(compute_dtype)  # no copy when already fp32: never modified in place
        g = None  # fp32 gradient of this chunk; None = all zero
        if has_kl:
            sel = kl_mask[r0:r1]
            t = teacher[r0:r1].to(compute_dtype)
            log_ps = torch.log_softmax(s * inv_t if inv_t != 1.0 else s, dim=-1)
            log_pt = torch.log_softmax(t * inv_t if inv_t != 1.0 else t, dim=-1)
            del t
            pt = log_pt.exp()
            kl = torch.linalg.vecdot(pt, log_pt.sub_(log_ps))  # sum p_t (log p_t - log p_s)
            del log_pt
            kl_rows[r0:r1] = torch.where(sel, kl, 0.0)
            if write_grad:
                g = log_ps.exp_().sub_(pt).mul_(c_kl)  # alpha_kl*T/n_kl * (p_s - p_t)
                if not (gather_rows and bool(sel.all())):
                    g.masked_fill_(~sel.unsqueeze(-1), 0.0)
            del log_ps, pt
        if has_ce:
            lab = labels[r0:r1]
            target = lab != IGNORE_INDEX
            if gather_rows:
                rows = target.nonzero().squeeze(1)
                s_ce, lab_ce = s.index_select(0, rows), lab.index_select(0, rows)
            else:
                rows, s_ce, lab_ce = None, s, lab
            valid = (lab_ce >= 0) & (lab_ce < vocab)
            idx = torch.where(valid, lab_ce, 0).unsqueeze(-1)
            log_p1 = torch.log_softmax(s_ce, dim=-1)
            ce = torch.where(valid, -log_p1.gather(1, idx).squeeze(-1), float("nan"))
            if gather_rows:
                ce_rows[r0:r1].index_copy_(0, rows, ce)
            else:
                ce_rows[r0:r1] = torch.where(target, ce, 0.0)
            if write_grad:
                p1 = log_p1.exp_()
                # softmax(s) - onehot(label); index_put_ (scatter_add_ is strangely slow on CPU)
                hit = torch.arange(p1.shape[0], device=p1.device)
                p1.index_put_((hit, idx.squeeze(-1)), -valid.to(p1.dtype), accumulate=True)
                p1.mul_(c_ce)
                if gather_rows:
                    # rows are unique: select-add-copy (index_add_ is a slow scatter on CPU)
                    if g is None:
                        g = torch.zeros_like(s).index_copy_(0, rows, p1)
                    else:
                        g.index_copy_(0, rows, g.index_select(0, rows).add_(p1))
                else:
                    p1.masked_fill_(~target.unsqueeze(-1), 0.0)
                    g = p1 if g is None else g.add_(p1)
            del log_p1
        if write_grad:
            if g is None:
                grad[r0:r1].zero_()
            else:
                grad[r0:r1].copy_(g)
    return kl_rows, ce_rows, grad


def cosine_rows(
    student_hidden: torch.Tensor,  # [N, H]
    teacher_hidden: torch.Tensor,  # [N, H]
    row_mask: torch.Tensor,  # [N] bool: real tokens
    grad_scale: torch.Tensor,  # [] fp32: alpha_cos / n_real
    write_grad: bool,
):
    """Per-row 1 - cos(h_s, h_t) (0 outside row_mask) and d(total)/d(h_s) if asked.

    cos = <a,b> / sqrt((|a|^2 + eps)(|b|^2 + eps)); d cos/d a = b / sqrt(AB) - cos * a / A.
    Hidden states are small next to logits, so this runs in one piece.
    """
    compute_dtype = torch.promote_types(student_hidden.dtype, torch.float32)
    a = student_hidden.to(compute_dtype)
    b = teacher_hidden.to(compute_dtype)
    sq_a = (a * a).sum(-1, keepdim=True) + COS_EPS
    sq_b = (b * b).sum(-1, keepdim=True) + COS_EPS
    inv_norm = torch.rsqrt(sq_a * sq_b)
    cos = (a * b).sum(-1, keepdim=True) * inv_norm
    rows = torch.where(row_mask, 1.0 - cos.squeeze(-1), 0.0)
    grad = None
    if write_grad:
        g = (b * inv_norm - a * (cos / sq_a)) * (-grad_scale.to(compute_dtype))
        g = g.masked_fill_(~row_mask.unsqueeze(-1), 0.0)
        grad = g.to(student_hidden.dtype)
    return rows, grad
