"""The relation KL in plain PyTorch, in blocks of query rows: the CPU path (and GPU fallback) of
`relation_distillation_loss`.

For one relation type (Q, K or V) and relation head r of sequence b, with A the student's [L, d_s]
slice, T the teacher's [L, d_t] slice, S = A Aᵀ/√d_s, U = T Tᵀ/√d_t and padding keys masked out:
    KL_i = Σ_j P_t[i,j] (log P_t[i,j] − log P_s[i,j]),  P = row softmax,  term = Σ_{b,r,i real} KL_i / (R n)
    d term / d A = (G + Gᵀ) A / √d_s,  G = (P_s − P_t) / (R n) on real (query, key) pairs, 0 elsewhere
(docs/losses.md derives it). A block of C query rows holds its rows' full relations, so both halves of
the gradient come from the block: G_blk A into the block's rows (A as key), G_blkᵀ A_blk into every row
(A as query). The gradient is formed during the forward, like the logits loss; only [nb, C, L] blocks
(nb of the B·R (sequence, head) pairs at a time) and the [B, L, H] inputs and gradient are ever held.
"""

from __future__ import annotations

import math

import torch

# Elements of one [nb, C, L] block; about six fp32/fp64 blocks are alive at once (scores, log-softmaxes,
# probabilities, gradient block), so the path's temporaries stay near 6 x 4 x 2^20 = 24 MiB in fp32.
_BLOCK_ELEMENTS = 1 << 20
_MAX_BLOCK_ROWS = 128  # query rows per block: enough for the matmuls to run at speed


def relation_block(pairs: int, length: int, budget: int = _BLOCK_ELEMENTS) -> tuple[int, int]:
    """(nb, C): (sequence, head) pairs and query rows per block, nb * C * L <= budget (at least 1 x 1)."""
    rows = max(1, min(length, _MAX_BLOCK_ROWS, budget // max(length, 1)))
    return max(1, min(pairs, budget // max(rows * length, 1))), rows


def _split_heads(x: torch.Tensor, real: torch.Tensor, heads: int, dtype: torch.dtype) -> torch.Tensor:
    """[B, L, H] -> [B*R, L, d] in `dtype`, padding rows zeroed (their values, even NaN, never count)."""
    batch, length, width = x.shape
    x = torch.where(real.unsqueeze(-1), x.to(dtype), 0.0)
    return x.reshape(batch, length, heads, width // heads).transpose(1, 2).reshape(batch * heads, length, -1)


def _log_relation_block(a_rows, a_all, scale, pad_keys, fill):
    """log softmax of one block of relation rows: [nb, C, L]."""
    scores = torch.baddbmm(a_rows.new_empty(()), a_rows, a_all.transpose(1, 2), beta=0.0, alpha=scale)
    return torch.log_softmax(scores.masked_fill_(pad_keys, fill), dim=-1)


def chunked_relation_kl(
    student: torch.Tensor,  # [B, L, H_s], any float dtype
    teacher: torch.Tensor,  # [B, L, H_t], any float dtype (a constant)
    real: torch.Tensor,  # [B, L] bool: real tokens (queries counted, keys kept)
    heads: int,  # R relation heads; R divides H_s and H_t
    grad_scale: torch.Tensor,  # [] fp64: 1 / (R n), n = number of real tokens
    write_grad: bool,
):
    """Per-row KL of one relation type and, if asked, d term / d student.

    Returns (kl_rows [B, R, L] in fp32 (fp64 for fp64 students), 0 for padding queries; grad [B, L, H_s] in
    the student's dtype, or None). term = kl_rows.sum() * grad_scale; the gradient is already scaled by it.
    """
    batch, length, width = student.shape
    dtype = torch.promote_types(student.dtype, torch.float32)
    pairs = batch * heads
    scale_s = 1.0 / math.sqrt(width // heads)
    scale_t = 1.0 / math.sqrt(teacher.shape[-1] // heads)
    a = _split_heads(student, real, heads, dtype)
    t = _split_heads(teacher, real, heads, dtype)
    real_pairs = real.repeat_interleave(heads, dim=0)  # [B*R, L]: each pair's real tokens
    pad = ~real_pairs
    fill = torch.finfo(dtype).min  # exact 0 probability for padding keys, finite arithmetic everywhere
    kl_rows = torch.zeros(pairs, length, dtype=dtype, device=student.device)
    grad = torch.zeros_like(a) if write_grad else None
    nb, rows = relation_block(pairs, length)
    for p0 in range(0, pairs, nb):
        p1 = min(p0 + nb, pairs)
        a_p, t_p, pad_keys = a[p0:p1], t[p0:p1], pad[p0:p1].unsqueeze(1)
        for q0 in range(0, length, rows):
            q1 = min(q0 + rows, length)
            log_ps = _log_relation_block(a_p[:, q0:q1], a_p, scale_s, pad_keys, fill)
            log_pt = _log_relation_block(t_p[:, q0:q1], t_p, scale_t, pad_keys, fill)
            p_t = log_pt.exp()
            # padding keys: p_t = 0 and both log-probabilities are finite, so they add exactly 0
            kl = torch.linalg.vecdot(p_t, log_pt.sub_(log_ps))
            del log_pt
            pad_queries = pad[p0:p1, q0:q1]
            kl_rows[p0:p1, q0:q1] = kl.masked_fill_(pad_queries, 0.0)
            if write_grad:
                g = log_ps.exp_().sub_(p_t).masked_fill_(pad_queries.unsqueeze(-1), 0.0)  # P_s - P_t, real queries
                grad[p0:p1, q0:q1].baddbmm_(g, a_p)  # the block's rows as queries: G_blk A
                grad[p0:p1].baddbmm_(g.transpose(1, 2), a_p[:, q0:q1])  # ... and as keys: G_blkᵀ A_blk
            del log_ps, p_t
    if write_grad:
        grad.mul_(grad_scale.to(dtype) * scale_s)
        grad = grad.reshape(batch, heads, length, -1).transpose(1, 2).reshape(batch, length, width)
        grad = grad.to(student.dtype)
    return kl_rows.reshape(batch, heads, length), grad
