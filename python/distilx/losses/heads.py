"""One entry for the loss of any head's logits, chosen by what the logits mean (the `problem`).

- MASKED_LM ([B, L, V], labels [B, L] with -100 off target) and SINGLE_LABEL ([B, C], labels [B]):
  `distillation_loss` (softmax KL · T² + cross-entropy + cosine); masked-LM rows are the real tokens of
  `attention_mask`;
- TOKENS ([B, L, C], labels [B, L] with -100 on unlabelled positions — special tokens, padding, the
  sub-tokens after a word's first): `distillation_loss` on the labelled positions' rows only, so the KL
  and the cross-entropy are means over labelled positions;
- MULTI_LABEL ([B, C], float labels [B, C]): `multi_label_distillation_loss` (per-label binary KL · T² + BCE);
- REGRESSION ([B, 1], float labels [B]): `regression_distillation_loss` (MSE to the teacher + to the gold).

Hidden states, when given, are [n, H] rows of their own (every real token's last hidden state).
The problem names are transformers' `problem_type` values plus two of distilx's (TOKENS, MASKED_LM).
"""

from __future__ import annotations

import torch

from .defaults import ALPHA_COS, ALPHA_KL, ALPHA_MLM, IGNORE_INDEX, KL_ON, TEMPERATURE

__all__ = ["head_distillation_loss", "SINGLE_LABEL", "MULTI_LABEL", "REGRESSION", "TOKENS", "MASKED_LM", "SPANS"]

SINGLE_LABEL, MULTI_LABEL, REGRESSION = "single_label_classification", "multi_label_classification", "regression"
TOKENS, MASKED_LM = "token_classification", "masked_lm"
# a …ForQuestionAnswering's start and end logits: two [B, L] tensors, not one `logits` (its loss rows are
# built by tasks/question_answering.span_rows, then `distillation_loss`)
SPANS = "question_answering"


def head_distillation_loss(problem: str, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                           labels: torch.Tensor, attention_mask: torch.Tensor | None = None,
                           student_hidden: torch.Tensor | None = None, teacher_hidden: torch.Tensor | None = None, *,
                           temperature: float = TEMPERATURE, alpha_kl: float = ALPHA_KL, alpha_mlm: float = ALPHA_MLM,
                           alpha_cos: float = ALPHA_COS, kl_on: str = KL_ON, backend: str = "auto"):
    """The DistillationLossOutput of a batch's student and teacher logits for `problem` (module docstring)."""
    from .api import distillation_loss

    weights = dict(alpha_kl=alpha_kl, alpha_mlm=alpha_mlm, alpha_cos=alpha_cos)
    if problem == MULTI_LABEL:
        from .multi_label import multi_label_distillation_loss

        return multi_label_distillation_loss(student_logits, teacher_logits, labels, student_hidden, teacher_hidden,
                                             temperature=temperature, **weights)
    if problem == REGRESSION:
        from .regression import regression_distillation_loss

        return regression_distillation_loss(student_logits, teacher_logits, labels, student_hidden, teacher_hidden,
                                            **weights)
    options = dict(temperature=temperature, kl_on=kl_on, backend=backend, **weights)
    if problem == TOKENS:
        rows = labels != IGNORE_INDEX
        return distillation_loss(student_logits[rows], teacher_logits[rows], labels[rows], None, student_hidden,
                                 teacher_hidden, **options)
    if problem in (SINGLE_LABEL, MASKED_LM):
        row_mask = attention_mask if student_logits.dim() == 3 else None
        return distillation_loss(student_logits, teacher_logits, labels, row_mask, student_hidden, teacher_hidden,
                                 **options)
    raise ValueError(f"problem={problem!r}; choose one of {(SINGLE_LABEL, MULTI_LABEL, REGRESSION, TOKENS, MASKED_LM)}")
