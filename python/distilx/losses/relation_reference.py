"""The eager MiniLMv2 relation loss: the oracle of the relation tests and the benchmarks' baseline.

A transcription of MiniLMv2's self-attention relation distillation: each side's [B, L, H] projection is
split into R relation heads of size d_r = H / R, relation = softmax(A_r A_rᵀ / √d_r) over the real keys
(padding keys get the most negative finite score, as BERT-style additive masks do), and the loss is
KL(teacher ‖ student) summed over keys, averaged over relation heads and real query tokens, for
Q-Q, K-K and V-V. It materialises every [B, R, L, L] relation and relies on autograd.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .defaults import RELATION_HEADS


def _log_relation(x: torch.Tensor, real: torch.Tensor, heads: int, dtype: torch.dtype) -> torch.Tensor:
    """log softmax(A_r A_rᵀ / √d_r) over the real keys: [B, R, L, L]."""
    batch, length, width = x.shape
    d = width // heads
    a = x.to(dtype).reshape(batch, length, heads, d).transpose(1, 2)
    scores = a @ a.transpose(-1, -2) / math.sqrt(d)
    # the scores' own dtype: under autocast they are bf16, where fp32's minimum would round to -inf
    scores = scores.masked_fill(~real[:, None, None, :], torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)


def reference_relation_kl(student: torch.Tensor, teacher: torch.Tensor, attention_mask: torch.Tensor | None,
                          relation_heads: int = RELATION_HEADS) -> torch.Tensor:
    """One relation term (e.g. Q-Q): mean over relation heads and real queries of KL(teacher ‖ student).

    Computes in the student's dtype promoted to at least fp32 (fp64 stays fp64, for gradcheck); a batch with
    no real token gives 0. The teacher is a constant (detached).
    """
    batch, length, _ = student.shape
    dtype = torch.promote_types(student.dtype, torch.float32)
    real = (torch.ones(batch, length, dtype=torch.bool, device=student.device) if attention_mask is None
            else attention_mask != 0)
    log_ps = _log_relation(student, real, relation_heads, dtype)
    log_pt = _log_relation(teacher.detach(), real, relation_heads, dtype)
    kl = F.kl_div(log_ps, log_pt, log_target=True, reduction="none").sum(-1)  # [B, R, L]
    kl = kl.masked_fill(~real[:, None, :], 0.0)
    return kl.sum() / (relation_heads * real.sum().clamp_min(1))


def reference_relation_loss(student_q, student_k, student_v, teacher_q, teacher_k, teacher_v, attention_mask,
                            *, relation_heads: int = RELATION_HEADS):
    """(total, qq, kk, vv): the three relation terms and their sum, all carrying autograd."""
    qq = reference_relation_kl(student_q, teacher_q, attention_mask, relation_heads)
    kk = reference_relation_kl(student_k, teacher_k, attention_mask, relation_heads)
    vv = reference_relation_kl(student_v, teacher_v, attention_mask, relation_heads)
    return qq + kk + vv, qq, kk, vv
