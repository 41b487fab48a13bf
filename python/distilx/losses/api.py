"""The DistilBERT distillation loss as one call: validation, backend dispatch and autograd glue.

    total = alpha_kl * KL + alpha_mlm * MLM + alpha_cos * COS

* KL  = T^2 / n_sel * sum over selected rows of KL(softmax(t/T) ‖ softmax(s/T)); the rows are the real
        tokens (attention_mask != 0) with kl_on="tokens", or the MLM targets (labels != -100) with
        kl_on="targets".
* MLM = mean cross-entropy of the student at T = 1 over labels != -100.
* COS = mean over real tokens of 1 - cos(h_s, h_t) (CosineEmbeddingLoss's form, eps 1e-12). Hidden
        states row-aligned with the logits use attention_mask; hidden states with other rows (e.g. every
        real token while the logits hold only the masked targets) are their own set, every row real.

Both backends (the Triton kernels in `distilx.triton_kernels`, the chunked PyTorch path in
`losses/chunked.py`) form the student gradient during the forward (`losses/autograd.py`); the backward
only multiplies it by grad_output.

Documented edge cases (each has a test):
* an empty selection (no labels in the batch, or no real token) gives a term of exactly 0, not NaN;
* alpha_cos > 0 without hidden states: the COS term is 0 (hidden states are optional); passing only
  one of the two hidden states is an error; hidden states of different widths are an error only when
  alpha_cos > 0 (with 0 the term is off, so a narrower student trains);
* a non-finite logit/hidden value in a selected row makes the loss non-finite (NaN or inf), so a
  trainer's non-finite guard sees it; non-finite values in unselected rows (padding) are ignored;
* the teacher never receives a gradient (its tensors are treated as constants);
* labels outside [0, V) (other than -100) raise ValueError; that check is the only one that reads data
  (a host sync on CUDA), so it is skipped with validate=False and while a CUDA graph is being captured,
  and such labels then make the MLM term NaN instead.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .autograd import CosineLoss, LogitsLoss
from .checks import check_options, check_row_tensors, check_tensor, labels_out_of_range, resolve_backend
from .defaults import ALPHA_COS, ALPHA_KL, ALPHA_MLM, IGNORE_INDEX, KL_ON, TEMPERATURE

__all__ = ["distillation_loss", "DistillationLoss", "DistillationLossOutput"]


class DistillationLossOutput(NamedTuple):
    """loss: the weighted total (differentiable). kl, mlm, cos: the unweighted terms, detached, for logging."""

    loss: torch.Tensor
    kl: torch.Tensor
    mlm: torch.Tensor
    cos: torch.Tensor



def distillation_loss(
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
    backend: str = "auto",
    validate: bool = True,
) -> DistillationLossOutput:
    """DistilBERT's triple loss, fused. Returns DistillationLossOutput(loss, kl, mlm, cos).

    student_logits, teacher_logits: [B, L, V] or [N, V] (dtypes may differ; the teacher gets no grad).
    labels: [B, L] or [N] integer, -100 = not an MLM target.
    attention_mask: [B, L] or [N], nonzero = real token; None = every row is real.
    student_hidden, teacher_hidden: optional last-layer hidden states, [B, L, H] or [N, H] like the
    logits (the cosine then runs over the real rows of attention_mask), or [M, H] rows of their own (the
    cosine runs over all M: e.g. every real token while the logits hold only the masked targets).
    temperature: T of the KL term (which is multiplied by T^2). alpha_*: term weights, 0 = term skipped.
    kl_on: "tokens" (every real token, DistilBERT's default) or "targets" (only labels != -100).
    backend: "auto" (Triton for CUDA tensors, PyTorch otherwise), "triton" or "torch".
    validate: check that labels lie in [0, V) (or are -100). It is the only check that reads data, so on
    CUDA it costs one host sync per call; validate=False skips it (a training loop that already
    validated its data), and an out-of-range label then makes the MLM term NaN instead of raising.
    """
    temperature, alpha_kl, alpha_mlm, alpha_cos = check_options(
        temperature, alpha_kl, alpha_mlm, alpha_cos, kl_on, backend
    )
    check_tensor("student_logits", student_logits, floating=True)
    check_tensor("teacher_logits", teacher_logits, floating=True)
    if student_logits.dim() not in (2, 3):
        raise ValueError(f"student_logits must be [B, L, V] or [N, V], got shape {tuple(student_logits.shape)}")
    vocab = student_logits.shape[-1]
    if teacher_logits.shape[-1] != vocab:
        raise ValueError(
            f"vocabulary mismatch: student_logits has V={vocab} but teacher_logits has "
            f"V={teacher_logits.shape[-1]}; student and teacher must share one tokenizer/vocabulary"
        )
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher_logits shape {tuple(teacher_logits.shape)} != student_logits shape "
            f"{tuple(student_logits.shape)}; both models must see the same batch"
        )
    rows_shape = student_logits.shape[:-1]
    use_cos = check_row_tensors(rows_shape, "the logits", labels, attention_mask, student_hidden, teacher_hidden,
                                alpha_cos)
    tensors = [student_logits, teacher_logits, labels]
    tensors += [attention_mask] if attention_mask is not None else []
    tensors += [student_hidden, teacher_hidden] if student_hidden is not None else []
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    backend = resolve_backend(backend, [student_logits, teacher_logits] + ([student_hidden, teacher_hidden] if use_cos else []))
    if validate and (alpha_mlm > 0 or kl_on == "targets") and labels_out_of_range(labels, vocab):
        raise ValueError(
            f"labels must be -100 (ignored) or token ids in [0, {vocab}); found values outside that range "
            "(was the batch built with another tokenizer?)"
        )

    n_rows = rows_shape.numel()
    student = student_logits.reshape(n_rows, vocab)
    student = student if student.stride(-1) == 1 else student.contiguous()
    teacher = teacher_logits.detach().reshape(n_rows, vocab)
    teacher = teacher if teacher.stride(-1) == 1 else teacher.contiguous()
    # contiguous: the kernel indexes labels by row (a strided [N] view, e.g. a column, stays strided here)
    flat_labels = labels.reshape(n_rows).to(torch.int64).contiguous()
    real = (
        torch.ones(n_rows, dtype=torch.bool, device=student.device)
        if attention_mask is None
        else attention_mask.reshape(n_rows) != 0
    )
    kl_mask = real if kl_on == "tokens" else flat_labels != IGNORE_INDEX

    zero = torch.zeros((), dtype=torch.float32, device=student.device)
    if alpha_kl > 0 or alpha_mlm > 0:
        total, kl, mlm = LogitsLoss.apply(
            student, teacher, flat_labels, kl_mask, temperature, alpha_kl, alpha_mlm, backend
        )
    else:
        total, kl, mlm = zero, zero, zero.clone()
    cos = zero.clone()
    if use_cos:
        weighted_cos, cos = cosine_term(student_hidden, teacher_hidden, real, rows_shape, alpha_cos, backend)
        total = total + weighted_cos
    return DistillationLossOutput(total, kl, mlm, cos)


def cosine_term(student_hidden, teacher_hidden, real, rows_shape, alpha_cos, backend):
    """(alpha_cos * COS, COS). Hidden states row-aligned with the logits' rows (leading shape rows_shape)
    count their real rows (`real`, [N] bool); hidden states with rows of their own count every row."""
    hidden = student_hidden.shape[-1]
    hs = student_hidden.reshape(-1, hidden)
    hs = hs if hs.is_contiguous() else hs.contiguous()
    ht = teacher_hidden.detach().reshape(-1, hidden).contiguous()
    hidden_real = real if student_hidden.shape[:-1] == rows_shape else torch.ones(
        hs.shape[0], dtype=torch.bool, device=hs.device)
    return CosineLoss.apply(hs, ht, hidden_real, alpha_cos, backend)


class DistillationLoss(nn.Module):
    """nn.Module holding the options of `distillation_loss`; call it with the tensors."""

    def __init__(
        self,
        *,
        temperature: float = TEMPERATURE,
        alpha_kl: float = ALPHA_KL,
        alpha_mlm: float = ALPHA_MLM,
        alpha_cos: float = ALPHA_COS,
        kl_on: str = KL_ON,
        backend: str = "auto",
        validate: bool = True,
    ):
        super().__init__()
        # validate once, at construction, so a bad config fails before training starts
        temperature, alpha_kl, alpha_mlm, alpha_cos = check_options(
            temperature, alpha_kl, alpha_mlm, alpha_cos, kl_on, backend
        )
        self.options = dict(temperature=temperature, alpha_kl=alpha_kl, alpha_mlm=alpha_mlm, alpha_cos=alpha_cos,
                            kl_on=kl_on, backend=backend, validate=bool(validate))

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        student_hidden: torch.Tensor | None = None,
        teacher_hidden: torch.Tensor | None = None,
    ) -> DistillationLossOutput:
        return distillation_loss(
            student_logits, teacher_logits, labels, attention_mask, student_hidden, teacher_hidden, **self.options
        )

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.options.items())
