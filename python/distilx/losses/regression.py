"""The distillation loss of a regression head (one output per example).

    total = alpha_kl · MSE(s, t) + alpha_mlm · MSE(s, y) + alpha_cos · COS

* MSE(s, t): the mean squared difference between the student's and the teacher's outputs — the
  teacher term (logged as `kl`); a regression output has no distribution, so there is no temperature;
* MSE(s, y): the mean squared error to the gold values — `MSELoss()`, transformers' own regression
  loss (logged as the gold term);
* COS: the cosine term of `distillation_loss` over the hidden-state rows.

The weights are the run's alpha_kl / alpha_mlm / alpha_cos (one set of knobs for every task).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .api import DistillationLossOutput
from .checks import check_options, check_tensor
from .defaults import ALPHA_COS, ALPHA_KL, ALPHA_MLM
from .multi_label import hidden_cosine

__all__ = ["regression_distillation_loss"]


def regression_distillation_loss(
    student_outputs: torch.Tensor,
    teacher_outputs: torch.Tensor,
    labels: torch.Tensor,
    student_hidden: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
    *,
    alpha_kl: float = ALPHA_KL,
    alpha_mlm: float = ALPHA_MLM,
    alpha_cos: float = ALPHA_COS,
) -> DistillationLossOutput:
    """MSE to the teacher's output + MSE to the gold value + the cosine.

    student_outputs, teacher_outputs: [B] or [B, 1] (a regression head's logits; the teacher gets no
    gradient). labels: [B] floating gold values. student_hidden, teacher_hidden: optional [n, H] rows.
    Returns DistillationLossOutput(loss, kl = MSE to the teacher, mlm = MSE to the gold, cos), the terms
    unweighted and detached.
    """
    _, alpha_kl, alpha_mlm, alpha_cos = check_options(1.0, alpha_kl, alpha_mlm, alpha_cos, "tokens", "auto")
    check_tensor("student_outputs", student_outputs, floating=True)
    check_tensor("teacher_outputs", teacher_outputs, floating=True)
    check_tensor("labels", labels, floating=True)
    s, t = student_outputs.reshape(-1), teacher_outputs.reshape(-1)
    if student_outputs.dim() > 2 or (student_outputs.dim() == 2 and student_outputs.shape[1] != 1) or \
            s.shape != t.shape or labels.shape != s.shape:
        raise ValueError(f"a regression head gives one output per example: student_outputs and teacher_outputs must "
                         f"be [B] or [B, 1] and labels [B]; got {tuple(student_outputs.shape)}, "
                         f"{tuple(teacher_outputs.shape)} and {tuple(labels.shape)}")
    dtype = torch.promote_types(s.dtype, torch.float32)
    s, t = s.to(dtype), t.detach().to(dtype)
    zero = s.sum() * 0
    to_teacher = F.mse_loss(s, t) if alpha_kl > 0 and s.numel() else zero
    to_gold = F.mse_loss(s, labels.to(dtype)) if alpha_mlm > 0 and s.numel() else zero
    weighted_cos, cos = hidden_cosine(student_hidden, teacher_hidden, alpha_cos, s)
    total = alpha_kl * to_teacher + alpha_mlm * to_gold + weighted_cos
    return DistillationLossOutput(total, to_teacher.detach(), to_gold.detach(), cos.detach())
