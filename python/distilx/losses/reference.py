"""The eager DistilBERT formula: the oracle every loss path is tested against, and the benchmarks' baseline.

A line-by-line transcription of DistilBERT's distiller (docs/recipe.md): KLDivLoss(batchmean) on the
selected rows × T², CrossEntropyLoss(ignore_index=-100), CosineEmbeddingLoss against a target of ones.
It materialises several N×V fp32 tensors and relies on autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .defaults import ALPHA_COS, ALPHA_KL, ALPHA_MLM, IGNORE_INDEX, KL_ON, TEMPERATURE


def reference_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    student_hidden: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
    *,
    temperature: float = TEMPERATURE,
    alpha_kl: float = ALPHA_KL,
    alpha_mlm: float = ALPHA_MLM,
    alpha_cos: float = ALPHA_COS,
    kl_on: str = KL_ON,
):
    """The eager DistilBERT formula. Returns (total, kl, mlm, cos); total carries autograd.

    Computes in the student's dtype promoted to at least fp32 (fp64 stays fp64, for gradcheck).
    Empty selections give a 0 term (the reference code would give NaN; distilx documents 0).
    Hidden states whose rows are not the logits' rows (another leading shape) are their own row set,
    every row of it real — the rule of `distillation_loss`.
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
        hs = student_hidden.reshape(-1, hidden).to(dtype)
        ht = teacher_hidden.reshape(-1, hidden).to(dtype).detach()
        if student_hidden.shape[:-1] == student_logits.shape[:-1]:
            hs, ht = hs[real], ht[real]
        if hs.shape[0] > 0:
            ones = hs.new_ones(hs.shape[0])
            cos = F.cosine_embedding_loss(hs, ht, ones, reduction="mean")
    total = alpha_kl * kl + alpha_mlm * mlm + alpha_cos * cos
    return total, kl.detach(), mlm.detach(), cos.detach()
