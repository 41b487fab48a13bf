"""The relation KL in plain PyTorch, in blocks of query rows: the CPU path (and GPU fallback) of
`relation_distillation_loss`.

For one relation type (Q, K or V) and relation head r of sequence b, with A the student's [L, d_s]
slice, T the teacher's [L, d_t] slice, S = A Aᵀ/√d_s, U = T Tᵀ/√d_t and padding keys masked out:
    KL_i = Σ_j P_t[i,j] (log P_t[i,j] − log P_s[i,j]),  P = row softmax,  term = Σ_{b,r,i real} KL_i / (R n)
    d term / d A = (G + Gᵀ) A / √d_s,  G = (P_s − P_t) / (R n) on real (query, key) pairs, 0 elsewhere
(docs/losses.md derives it). A block of C query rows holds its rows' full relations, so both halves of
the gradient come from the block: G_blk A into the block's rows (A as key), G_blkᵀ A_blk into every row
(A as query). The gradient is formed during the forward, like the logits loss. Sequences go through in
groups (head-split copies of <= 2^22 elements), their pairs in [nb, C, L] blocks (<= 2^20 elements), so
besides the [B, L, H_s] gradient the path holds O(2^22) elements whatever B and L are.
"""

from __future__ import annotations

import math

import torch

# Elements of one [nb, C, L] block; at most five fp32/fp64 blocks are alive at once (log-probabilities and
# probabilities of both sides, the vecdot's product), so the temporaries stay near 5 x 4 x 2^20 = 20 MiB.
_BLOCK_ELEMENTS = 1 << 20
_MAX_BLOCK_ROWS = 128  # query rows per block: enough for the matmuls to run at speed
_GROUP_ELEMENTS = 4 * _BLOCK_ELEMENTS  # elements of a group's head-split copy of one side (16 MiB in fp32)


def relation_block(pairs: int, length: int, budget: int = _BLOCK_ELEMENTS) -> tuple[int, int]:
    """(nb, C): (sequence, head) pairs and query rows per block, nb * C * L <= budget (at least 1 x 1),
    balanced so that the last block is not a sliver (24 pairs in blocks of 12 + 12, not 16 + 8)."""
    rows = max(1, min(length, _MAX_BLOCK_ROWS, budget // max(length, 1)))
    rows = -(-length // -(-length // rows))  # the same number of row blocks, evened out
    nb = max(1, min(pairs, budget // max(rows * length, 1)))
    return -(-pairs // -(-pairs // nb)), rows


def _split_heads(x: torch.Tensor, real: torch.Tensor, heads: int, dtype: torch.dtype) -> torch.Tensor:
    """[B, L, H] -> [B*R, L, d] in `dtype` (one copy), padding rows zeroed (their values, even NaN, never count)."""
    batch, length, width = x.shape
    split = torch.empty(batch, heads, length, width // heads, dtype=dtype, device=x.device)
    split.copy_(x.view(batch, length, heads, width // heads).transpose(1, 2))  # a copy, never the input itself
    return split.masked_fill_(~real[:, None, :, None], 0.0).view(batch * heads, length, -1)


def _masked_scores(a_rows, a_all, scale, key_bias):
    """One block of relation rows, A_rows A_allᵀ · scale, with `key_bias` (0, or `fill` on padding keys) added
    by the matmul itself: [nb, C, L]."""
    return torch.baddbmm(key_bias, a_rows, a_all.transpose(1, 2), alpha=scale)


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
    Sequences go through in groups whose head-split copies hold <= _GROUP_ELEMENTS elements, so besides the
    gradient itself nothing of size [B, L, H] is allocated.
    """
    batch, length, width = student.shape
    dtype = torch.promote_types(student.dtype, torch.float32)
    d_s, d_t = width // heads, teacher.shape[-1] // heads
    scale_s, scale_t = 1.0 / math.sqrt(d_s), 1.0 / math.sqrt(d_t)
    fill = torch.finfo(dtype).min
    kl_rows = torch.zeros(batch * heads, length, dtype=dtype, device=student.device)
    grad = torch.empty_like(student, memory_format=torch.contiguous_format) if write_grad else None
    grad_factor = grad_scale.to(dtype) * scale_s
    seqs = max(1, _GROUP_ELEMENTS // max(heads * length * max(d_s, d_t), 1))  # sequences per group
    for b0 in range(0, batch, seqs):
        b1 = min(b0 + seqs, batch)
        a = _split_heads(student[b0:b1], real[b0:b1], heads, dtype)
        t = _split_heads(teacher[b0:b1], real[b0:b1], heads, dtype)
        pad = ~real[b0:b1].repeat_interleave(heads, dim=0)  # [g*R, L]: each pair's padding
        grad_heads = torch.zeros_like(a) if write_grad else None
        _relation_group(a, t, pad, scale_s, scale_t, fill, kl_rows[b0 * heads:b1 * heads], grad_heads)
        if write_grad:
            # [g*R, L, d_s] -> the [g, L, R*d_s] layout of the input, scaled, in the student's dtype
            grad_heads.mul_(grad_factor)
            grad[b0:b1].view(b1 - b0, length, heads, d_s).copy_(
                grad_heads.view(b1 - b0, heads, length, d_s).transpose(1, 2))
    return kl_rows.reshape(batch, heads, length), grad


def _relation_group(a, t, pad, scale_s, scale_t, fill, kl_rows, grad):
    """One group of (sequence, head) pairs: a [P, L, d_s], t [P, L, d_t] (padding rows zero), pad [P, L];
    writes kl_rows [P, L] and accumulates the unscaled (G + Gᵀ) A into grad [P, L, d_s] (if not None)."""
    pairs, length = pad.shape
    nb, rows = relation_block(pairs, length)
    # padding keys get the most negative finite score: exactly 0 probability, and no inf - inf anywhere
    key_bias = torch.zeros(pad.shape, dtype=a.dtype, device=a.device).masked_fill_(pad, fill).unsqueeze(1)
    for p0 in range(0, pairs, nb):
        p1 = min(p0 + nb, pairs)
        a_p, t_p, bias = a[p0:p1], t[p0:p1], key_bias[p0:p1]
        for q0 in range(0, length, rows):
            q1 = min(q0 + rows, length)
            # PyTorch's fused (log_)softmax kernels, not exp(): torch.exp takes a slow path on inputs far below
            # its range (the padding keys' scores), measured 2-3x slower per element than softmax on CPU
            s = _masked_scores(a_p[:, q0:q1], a_p, scale_s, bias)
            log_ps = torch.log_softmax(s, dim=-1)
            p_s = torch.softmax(s, dim=-1) if grad is not None else None
            del s
            u = _masked_scores(t_p[:, q0:q1], t_p, scale_t, bias)
            log_pt = torch.log_softmax(u, dim=-1)
            p_t = torch.softmax(u, dim=-1)
            del u
            # padding keys: p_t = 0 and both log-probabilities are finite, so they add exactly 0
            kl = torch.linalg.vecdot(p_t, log_pt.sub_(log_ps))
            del log_pt, log_ps
            kl_rows[p0:p1, q0:q1] = kl.masked_fill_(pad[p0:p1, q0:q1], 0.0)
            if grad is not None:
                g = p_s.sub_(p_t)  # P_s − P_t; padding queries' rows are not 0 here, see below
                grad[p0:p1, q0:q1].baddbmm_(g, a_p)  # the block's rows as queries: G_blk A
                # ... and as keys: G_blkᵀ A_blk, where A_blk's padding rows are 0, so padding queries add nothing
                grad[p0:p1].baddbmm_(g.transpose(1, 2), a_p[:, q0:q1])
                del g
            del p_s, p_t
    if grad is not None:
        grad.masked_fill_(pad.unsqueeze(-1), 0.0)  # the padding queries' own rows (from G_blk A)
