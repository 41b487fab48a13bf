"""The distillation loss of a multi-label classifier: every label is its own yes/no decision.

    total = alpha_kl · KL + alpha_mlm · BCE + alpha_cos · COS

* KL  = T² · mean over examples and labels of the binary KL(Bernoulli(σ(t/T)) ‖ Bernoulli(σ(s/T))) —
        the softmax KL of `distillation_loss` for a two-class distribution per label ([s, 0] is that
        label's two-class logit pair), softened by T and scaled by T² so that its gradient keeps its size
        as T grows (Hinton et al.);
* BCE = mean over examples and labels of the binary cross-entropy of σ(s) with the gold 0/1 (or soft)
        targets: `BCEWithLogitsLoss()`, transformers' own multi-label loss;
* COS = mean over the hidden-state rows of 1 − cos(h_s, h_t), as in `distillation_loss`.

Both means run over the B × C (example, label) pairs, so KL and BCE are on the same per-decision scale.
Plain PyTorch (log-sigmoid forms, stable for any logit); autograd gives the gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .api import DistillationLossOutput
from .checks import check_options, check_tensor
from .defaults import ALPHA_COS, ALPHA_KL, ALPHA_MLM, TEMPERATURE

__all__ = ["multi_label_distillation_loss", "binary_kl", "hidden_cosine"]


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Elementwise KL(Bernoulli(σ(t/T)) ‖ Bernoulli(σ(s/T))), in log-sigmoid form (no log(0) for any
    finite logit): p_t·(log p_t − log p_s) + (1 − p_t)·(log(1 − p_t) − log(1 − p_s))."""
    s, t = student_logits / temperature, teacher_logits.detach() / temperature
    p_t = torch.sigmoid(t)
    return p_t * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s))


def hidden_cosine(student_hidden, teacher_hidden, alpha_cos: float, like: torch.Tensor):
    """(alpha_cos · COS, COS) over every row of [n, H] hidden states, `distillation_loss`'s cosine term (the
    same autograd function); (0, 0) without hidden states or with alpha_cos = 0."""
    from .api import cosine_term
    from .checks import resolve_backend

    if (student_hidden is None) != (teacher_hidden is None):
        raise ValueError("pass both student_hidden and teacher_hidden, or neither (then the cosine term is 0)")
    zero = like.new_zeros(())
    if alpha_cos == 0 or student_hidden is None:
        return zero, zero.clone()
    if student_hidden.dim() != 2 or student_hidden.shape != teacher_hidden.shape:
        raise ValueError(f"student_hidden and teacher_hidden must be [n, H] of one shape (the cosine needs equal "
                         f"widths); got {tuple(student_hidden.shape)} and {tuple(teacher_hidden.shape)}")
    backend = resolve_backend("auto", [student_hidden, teacher_hidden])
    return cosine_term(student_hidden, teacher_hidden, None, (), alpha_cos, backend)


def multi_label_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    student_hidden: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
    *,
    temperature: float = TEMPERATURE,
    alpha_kl: float = ALPHA_KL,
    alpha_mlm: float = ALPHA_MLM,
    alpha_cos: float = ALPHA_COS,
) -> DistillationLossOutput:
    """Per-label binary KL at temperature T (× T²) + binary cross-entropy on the gold labels + the cosine.

    student_logits, teacher_logits: [B, C], one logit per label (the teacher gets no gradient).
    labels: [B, C] floating targets in [0, 1] (1 = the example has the label).
    student_hidden, teacher_hidden: optional [n, H] rows (e.g. every real token's last hidden state).
    Returns DistillationLossOutput(loss, kl, mlm = the BCE, cos), the three terms unweighted and detached.
    """
    temperature, alpha_kl, alpha_mlm, alpha_cos = check_options(temperature, alpha_kl, alpha_mlm, alpha_cos,
                                                                "tokens", "auto")
    check_tensor("student_logits", student_logits, floating=True)
    check_tensor("teacher_logits", teacher_logits, floating=True)
    check_tensor("labels", labels, floating=True)
    if student_logits.dim() != 2 or teacher_logits.shape != student_logits.shape or labels.shape != student_logits.shape:
        raise ValueError(f"student_logits, teacher_logits and labels must all be [B, C] (one column per label); got "
                         f"{tuple(student_logits.shape)}, {tuple(teacher_logits.shape)} and {tuple(labels.shape)}")
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    s, t = student_logits.to(dtype), teacher_logits.to(dtype)
    zero = s.sum() * 0  # 0 that carries autograd: an empty batch gives 0, not NaN
    kl = binary_kl(s, t, temperature).mean() * temperature ** 2 if alpha_kl > 0 and s.numel() else zero
    bce = F.binary_cross_entropy_with_logits(s, labels.to(dtype)) if alpha_mlm > 0 and s.numel() else zero
    weighted_cos, cos = hidden_cosine(student_hidden, teacher_hidden, alpha_cos, s)
    total = alpha_kl * kl + alpha_mlm * bce + weighted_cos
    return DistillationLossOutput(total, kl.detach(), bce.detach(), cos.detach())
