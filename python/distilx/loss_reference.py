"""The distillation loss in plain PyTorch: the chunked CPU/GPU path, and the oracle it is tested against.

Two things live here, both with exactly the semantics of REFERENCE.md ("The loss"):

* `reference_distillation_loss` — a line-by-line transcription of the DistilBERT reference
  (distiller.py: KLDivLoss(batchmean) on the selected rows × T², CrossEntropyLoss(ignore_index=-100),
  CosineEmbeddingLoss against a target of ones). It materialises several N×V fp32 tensors and relies on
  autograd. It is the oracle for every test and the "eager formula" of the benchmark.
* `chunked_logits_loss` / `cosine_rows` — the production PyTorch path. Rows are processed in chunks
  and the student-logit gradient is formed during the forward (like the Triton kernel), so the
  backward only scales it and peak extra memory stays near the size of that gradient.

Both chunked functions return per-row values; `losses.py` turns them into the terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
# CosineEmbeddingLoss's epsilon: cos = <a,b> / sqrt((|a|^2 + eps) (|b|^2 + eps)). Keeping the reference's
# form (not F.cosine_similarity's clamp) makes the term smooth and identical to DistilBERT's.
COS_EPS = 1e-12

# Chunk sizing of the PyTorch path. About 6 fp32 temporaries of one chunk are alive at once; they must
# stay below ~25% of the logits' own size (the gradient buffer is the other 100%), and a chunk should
# fit comfortably in cache-sized pieces (<= 4M elements per temporary) so the passes stay fast.
_LIVE_TEMPORARIES = 6
_EXTRA_FRACTION = 0.25
_MAX_CHUNK_ELEMENTS = 1 << 22


def reference_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    student_hidden: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
    *,
    temperature: float = 2.0,
    alpha_kl: float = 5.0,
    alpha_mlm: float = 2.0,
    alpha_cos: float = 1.0,
    kl_on: str = "tokens",
):
    """The eager DistilBERT formula. Returns (total, kl, mlm, cos); total carries autograd.

    Computes in the student's dtype promoted to at least fp32 (fp64 stays fp64, for gradcheck).
    Empty selections give a 0 term (the reference code would give NaN; distilx documents 0).
    """
    vocab = student_logits.shape[-1]
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    s = student_logits.reshape(-1, vocab).to(dtype)
    t = teacher_logits.reshape(-1, vocab).to(dtype).detach()
    lab = labels.reshape(-1)
    real = torch.ones_like(lab, dtype=torch.bool) if attention_mask is None else attention_mask.reshape(-1) != 0
    target = lab != IGNORE_INDEX
    kl_rows = real if kl_on == "tokens" else target
    zero = s[:0].sum()  # 0 that still carries autograd, and ignores NaN in unselected rows

    kl = zero
    if alpha_kl > 0:
        s_sel, t_sel = s[kl_rows], t[kl_rows]
        if s_sel.shape[0] > 0:
            kl = F.kl_div(
                F.log_softmax(s_sel / temperature, dim=-1),
                F.softmax(t_sel / temperature, dim=-1),
                reduction="batchmean",
            ) * (temperature**2)
    mlm = zero
    if alpha_mlm > 0 and bool(target.any()):
        mlm = F.cross_entropy(s, lab, ignore_index=IGNORE_INDEX)
    cos = zero
    if alpha_cos > 0 and student_hidden is not None and teacher_hidden is not None:
        hidden = student_hidden.shape[-1]
        hs = student_hidden.reshape(-1, hidden).to(dtype)[real]
        ht = teacher_hidden.reshape(-1, hidden).to(dtype).detach()[real]
        if hs.shape[0] > 0:
            ones = hs.new_ones(hs.shape[0])
            cos = F.cosine_embedding_loss(hs, ht, ones, reduction="mean")
    total = alpha_kl * kl + alpha_mlm * mlm + alpha_cos * cos
    return total, kl.detach(), mlm.detach(), cos.detach()


def chunk_rows_for(n_rows: int, vocab: int, element_size: int) -> int:
    """Rows per chunk so the chunk's fp32 temporaries stay under ~25% of the logits' size."""
    by_memory = int(n_rows * element_size * _EXTRA_FRACTION / (4 * _LIVE_TEMPORARIES))
    by_cache = _MAX_CHUNK_ELEMENTS // max(vocab, 1)
    return max(1, min(n_rows, by_memory, by_cache))


def chunked_logits_loss(
    student: torch.Tensor,  # [N, V] student logits, any float dtype, rows contiguous
    teacher: torch.Tensor,  # [N, V] teacher logits, any float dtype
    labels: torch.Tensor,  # [N] int64, IGNORE_INDEX = not a target
    kl_mask: torch.Tensor,  # [N] bool, rows counted in the KL term
    grad_scales: torch.Tensor,  # [2] fp32: (alpha_kl*T/n_kl, alpha_mlm/n_mlm), multiplies the gradient rows
    temperature: float,
    has_kl: bool,
    has_ce: bool,
    write_grad: bool,
):
    """Per-row KL(softmax(t/T) ‖ softmax(s/T)) and CE(s, label), plus d(total)/d(student) if asked.

    Returns (kl_rows [N], ce_rows [N] (fp32, or fp64 for fp64 input), grad [N, V] in the student's dtype or None).
    Rows outside a term's selection contribute exactly 0 to it (their values, even NaN, are ignored),
    and their gradient row is 0. Labels outside [0, V) give a NaN CE (validation raises earlier).
    """
    n_rows, vocab = student.shape
    compute_dtype = torch.promote_types(student.dtype, torch.float32)
    # per-row values in fp32 (fp64 for fp64 inputs, so gradcheck sees full precision)
    kl_rows = torch.zeros(n_rows, dtype=compute_dtype, device=student.device)
    ce_rows = torch.zeros(n_rows, dtype=compute_dtype, device=student.device)
    grad = torch.empty_like(student) if write_grad else None
    if n_rows == 0:
        return kl_rows, ce_rows, grad
    c_kl = grad_scales[0].to(compute_dtype)
    c_ce = grad_scales[1].to(compute_dtype)
    inv_t = 1.0 / temperature
    step = chunk_rows_for(n_rows, vocab, student.element_size())

    for r0 in range(0, n_rows, step):
        r1 = min(r0 + step, n_rows)
        s = student[r0:r1].to(compute_dtype)  # no copy when already fp32: never modified in place
        g = None
        if has_kl:
            sel = kl_mask[r0:r1]
            ss = s * inv_t
            tt = teacher[r0:r1].to(compute_dtype) * inv_t
            lse_s = torch.logsumexp(ss, dim=-1, keepdim=True)
            lse_t = torch.logsumexp(tt, dim=-1, keepdim=True)
            diff = tt - ss
            pt = tt.sub_(lse_t).exp_()
            # KL = sum p_t (t - s)/T - lse_t + lse_s   (sum p_t = 1)
            kl = torch.linalg.vecdot(pt, diff) - lse_t.squeeze(-1) + lse_s.squeeze(-1)
            del diff
            kl_rows[r0:r1] = torch.where(sel, kl, 0.0)
            if write_grad:
                g = ss.sub_(lse_s).exp_().sub_(pt).mul_(c_kl)  # alpha_kl*T/n * (p_s - p_t)
                g.masked_fill_(~sel.unsqueeze(-1), 0.0)
            del pt, ss, tt
        if has_ce:
            lab = labels[r0:r1]
            target = lab != IGNORE_INDEX
            valid = (lab >= 0) & (lab < vocab)
            idx = torch.where(valid, lab, 0).unsqueeze(-1)
            lse_1 = torch.logsumexp(s, dim=-1, keepdim=True)
            ce = (lse_1 - s.gather(1, idx)).squeeze(-1)
            ce = torch.where(valid, ce, float("nan"))
            ce_rows[r0:r1] = torch.where(target, ce, 0.0)
            if write_grad:
                p1 = (s - lse_1).exp_()
                p1.scatter_add_(1, idx, -valid.to(p1.dtype).unsqueeze(-1))
                p1.mul_(c_ce)
                p1.masked_fill_(~target.unsqueeze(-1), 0.0)
                g = p1 if g is None else g.add_(p1)
                del p1
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
