"""The DistilBERT distillation loss as one call: validation, backend dispatch and autograd glue.

    total = alpha_kl * KL + alpha_mlm * MLM + alpha_cos * COS

* KL  = T^2 / n_sel * sum over selected rows of KL(softmax(t/T) ‖ softmax(s/T)); the rows are the real
        tokens (attention_mask != 0) with kl_on="tokens", or the MLM targets (labels != -100) with
        kl_on="targets".
* MLM = mean cross-entropy of the student at T = 1 over labels != -100.
* COS = mean over real tokens of 1 - cos(h_s, h_t) (CosineEmbeddingLoss's form, eps 1e-12).

Both backends (the Triton kernels in `distilx.triton_kernels`, the chunked PyTorch path in
`distilx.loss_reference`) form the student gradient during the forward; the backward only multiplies
it by grad_output. No `.item()` and no data-dependent Python branch runs inside forward or backward.

Documented edge cases (each has a test):
* an empty selection (no labels in the batch, or no real token) gives a term of exactly 0, not NaN;
* alpha_cos > 0 without hidden states: the COS term is 0 (hidden states are optional); passing only
  one of the two hidden states is an error;
* a non-finite logit/hidden value in a selected row makes the loss non-finite (NaN or inf), so a
  trainer's non-finite guard sees it; non-finite values in unselected rows (padding) are ignored;
* the teacher never receives a gradient (its tensors are treated as constants);
* labels outside [0, V) (other than -100) raise ValueError; that check is the only one that reads data
  (a host sync on CUDA), so it is skipped with validate=False and while a CUDA graph is being captured,
  and such labels then make the MLM term NaN instead.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from . import loss_reference
from .loss_reference import IGNORE_INDEX

__all__ = ["distillation_loss", "DistillationLoss", "DistillationLossOutput"]

_BACKENDS = ("auto", "triton", "torch")
_KL_ON = ("tokens", "targets")
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class DistillationLossOutput(NamedTuple):
    """loss: the weighted total (differentiable). kl, mlm, cos: the unweighted terms, detached, for logging."""

    loss: torch.Tensor
    kl: torch.Tensor
    mlm: torch.Tensor
    cos: torch.Tensor


def _logits_impl(backend: str):
    if backend == "triton":
        from .triton_kernels import fused_logits_loss

        return fused_logits_loss
    return loss_reference.chunked_logits_loss


def _cosine_impl(backend: str):
    if backend == "triton":
        from .triton_kernels import fused_cosine_loss

        return fused_cosine_loss
    return loss_reference.cosine_rows


def _scale_stored_grad(ctx, grad_output: torch.Tensor):
    """d loss / d input = stored gradient x grad_output.

    In place (no second N x V buffer: that is what keeps peak memory at ~1x the logits), so one
    backward per forward. float64 inputs (verification only: gradcheck, retain_graph) scale out of place.
    """
    if getattr(ctx, "grad_consumed", False):  # checked before unpacking: autograd's own error is cryptic
        raise RuntimeError(
            "distilx's loss was back-propagated twice through one forward: its gradient is computed in the "
            "forward and scaled in place, so call distillation_loss again for a second backward"
        )
    (grad,) = ctx.saved_tensors
    if grad is None:
        return None
    if grad.dtype == torch.float64:
        return grad * grad_output
    ctx.grad_consumed = True
    return grad.mul_(grad_output.to(grad.dtype))


class _LogitsLoss(torch.autograd.Function):
    """alpha_kl * KL + alpha_mlm * MLM over [N, V] logits; the gradient is formed in the forward.

    Forward returns (weighted, kl, mlm): weighted = alpha_kl*KL + alpha_mlm*MLM (differentiable w.r.t.
    the student logits only), kl and mlm unweighted and non-differentiable.
    d weighted / d s[r] = alpha_kl*T/n_kl * (softmax(s/T) - softmax(t/T))[r] * [r in KL rows]
                        + alpha_mlm/n_mlm * (softmax(s) - onehot(label))[r] * [label[r] != -100]
    The stored gradient is scaled in place by grad_output in backward, so backward runs once per
    forward (a second backward through the same graph raises RuntimeError; float64 excepted).
    """

    @staticmethod
    def forward(ctx, student, teacher, labels, kl_mask, temperature, alpha_kl, alpha_mlm, backend):
        has_kl, has_ce = alpha_kl > 0, alpha_mlm > 0
        # counts stay on the device (no host sync); fp64 so fp64 inputs keep full precision
        n_kl = kl_mask.sum().clamp_min(1).double()
        n_mlm = (labels != IGNORE_INDEX).sum().clamp_min(1).double()
        grad_scales = torch.stack([alpha_kl * temperature / n_kl, alpha_mlm / n_mlm])
        write_grad = ctx.needs_input_grad[0]
        kl_rows, ce_rows, grad = _logits_impl(backend)(
            student, teacher, labels, kl_mask, grad_scales, temperature, has_kl, has_ce, write_grad
        )
        kl = (kl_rows.sum() * (temperature * temperature) / n_kl).to(kl_rows.dtype)
        mlm = (ce_rows.sum() / n_mlm).to(ce_rows.dtype)
        weighted = alpha_kl * kl + alpha_mlm * mlm if (has_kl and has_ce) else (
            alpha_kl * kl if has_kl else alpha_mlm * mlm
        )
        ctx.save_for_backward(grad if write_grad else None)
        ctx.mark_non_differentiable(kl, mlm)
        return weighted, kl, mlm

    @staticmethod
    def backward(ctx, grad_weighted, _grad_kl, _grad_mlm):
        return _scale_stored_grad(ctx, grad_weighted), None, None, None, None, None, None, None


class _CosineLoss(torch.autograd.Function):
    """alpha_cos * mean over real rows of (1 - cos(h_s, h_t)), gradient formed in the forward.

    Forward returns (weighted, cos_term). d/d h_s[r] = -alpha_cos/n * (h_t/sqrt(AB) - cos * h_s/A)
    with A = |h_s|^2 + eps, B = |h_t|^2 + eps, for real rows r (0 elsewhere).
    """

    @staticmethod
    def forward(ctx, student_hidden, teacher_hidden, row_mask, alpha_cos, backend):
        n = row_mask.sum().clamp_min(1).double()
        grad_scale = alpha_cos / n
        write_grad = ctx.needs_input_grad[0]
        rows, grad = _cosine_impl(backend)(student_hidden, teacher_hidden, row_mask, grad_scale, write_grad)
        cos = (rows.sum() / n).to(rows.dtype)
        ctx.save_for_backward(grad if write_grad else None)
        ctx.mark_non_differentiable(cos)
        return alpha_cos * cos, cos

    @staticmethod
    def backward(ctx, grad_weighted, _grad_cos):
        return _scale_stored_grad(ctx, grad_weighted), None, None, None, None


def _check_weight(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (0 switches the term off), got {value}")
    return value


def _check_options(temperature, alpha_kl, alpha_mlm, alpha_cos, kl_on, backend):
    temperature = _check_weight("temperature", temperature)
    if temperature == 0:
        raise ValueError("temperature must be > 0 (DistilBERT uses 2.0)")
    if kl_on not in _KL_ON:
        raise ValueError(f"kl_on must be one of {_KL_ON}, got {kl_on!r}")
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    return (
        temperature,
        _check_weight("alpha_kl", alpha_kl),
        _check_weight("alpha_mlm", alpha_mlm),
        _check_weight("alpha_cos", alpha_cos),
    )


def _resolve_backend(backend: str, tensors) -> str:
    on_cuda = tensors[0].is_cuda
    if backend == "auto":
        return "triton" if on_cuda else "torch"
    if backend == "triton":
        import os

        if not on_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(
                "backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 to run the kernels on the CPU "
                "interpreter); use backend='torch' or 'auto' for CPU tensors"
            )
        for t in tensors:
            if t.dtype not in _TRITON_DTYPES:
                raise TypeError(
                    f"backend='triton' supports float32, float16 and bfloat16 tensors, got {t.dtype}; "
                    "use backend='torch' for other dtypes"
                )
    return backend


def _check_tensor(name, t, *, floating):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if floating and not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32/float16/bfloat16), got {t.dtype}")


def _labels_out_of_range(labels: torch.Tensor, vocab: int) -> bool:
    """The one validation that reads data (a host sync); skipped while a CUDA graph is captured."""
    if labels.is_cuda and torch.cuda.is_current_stream_capturing():
        return False
    bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= vocab))
    return bool(bad.any())


def distillation_loss(
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
    backend: str = "auto",
    validate: bool = True,
) -> DistillationLossOutput:
    """DistilBERT's triple loss, fused. Returns DistillationLossOutput(loss, kl, mlm, cos).

    student_logits, teacher_logits: [B, L, V] or [N, V] (dtypes may differ; the teacher gets no grad).
    labels: [B, L] or [N] integer, -100 = not an MLM target.
    attention_mask: [B, L] or [N], nonzero = real token; None = every row is real.
    student_hidden, teacher_hidden: [B, L, H] or [N, H], optional (last-layer hidden states).
    temperature: T of the KL term (which is multiplied by T^2). alpha_*: term weights, 0 = term skipped.
    kl_on: "tokens" (every real token, DistilBERT's default) or "targets" (only labels != -100).
    backend: "auto" (Triton for CUDA tensors, PyTorch otherwise), "triton" or "torch".
    validate: check that labels lie in [0, V) (or are -100). It is the only check that reads data, so on
    CUDA it costs one host sync per call; validate=False skips it (a training loop that already
    validated its data), and an out-of-range label then makes the MLM term NaN instead of raising.
    """
    temperature, alpha_kl, alpha_mlm, alpha_cos = _check_options(
        temperature, alpha_kl, alpha_mlm, alpha_cos, kl_on, backend
    )
    _check_tensor("student_logits", student_logits, floating=True)
    _check_tensor("teacher_logits", teacher_logits, floating=True)
    _check_tensor("labels", labels, floating=False)
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
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor (int64 token ids, -100 = ignore), got {labels.dtype}")
    if labels.shape != rows_shape:
        raise ValueError(f"labels shape {tuple(labels.shape)} must equal the logits' leading shape {tuple(rows_shape)}")
    if attention_mask is not None:
        _check_tensor("attention_mask", attention_mask, floating=False)
        if attention_mask.shape != rows_shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} must equal the logits' leading shape "
                f"{tuple(rows_shape)}"
            )
    if (student_hidden is None) != (teacher_hidden is None):
        raise ValueError("pass both student_hidden and teacher_hidden, or neither (then the cosine term is 0)")
    use_cos = alpha_cos > 0 and student_hidden is not None
    if student_hidden is not None:
        _check_tensor("student_hidden", student_hidden, floating=True)
        _check_tensor("teacher_hidden", teacher_hidden, floating=True)
        if student_hidden.shape[:-1] != rows_shape or teacher_hidden.shape[:-1] != rows_shape:
            raise ValueError(
                f"hidden states must be [*, H] with leading shape {tuple(rows_shape)} like the logits; got "
                f"{tuple(student_hidden.shape)} and {tuple(teacher_hidden.shape)}"
            )
        if student_hidden.shape[-1] != teacher_hidden.shape[-1]:
            raise ValueError(
                f"hidden sizes differ (student H={student_hidden.shape[-1]}, teacher H={teacher_hidden.shape[-1]}); "
                "the cosine term needs equal sizes: project one side first, or set alpha_cos=0"
            )
    tensors = [student_logits, teacher_logits, labels]
    tensors += [attention_mask] if attention_mask is not None else []
    tensors += [student_hidden, teacher_hidden] if student_hidden is not None else []
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    backend = _resolve_backend(backend, [student_logits, teacher_logits] + ([student_hidden, teacher_hidden] if use_cos else []))
    if validate and (alpha_mlm > 0 or kl_on == "targets") and _labels_out_of_range(labels, vocab):
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
        total, kl, mlm = _LogitsLoss.apply(
            student, teacher, flat_labels, kl_mask, temperature, alpha_kl, alpha_mlm, backend
        )
    else:
        total, kl, mlm = zero, zero, zero.clone()
    cos = zero.clone()
    if use_cos:
        hidden = student_hidden.shape[-1]
        hs = student_hidden.reshape(n_rows, hidden)
        hs = hs if hs.is_contiguous() else hs.contiguous()
        ht = teacher_hidden.detach().reshape(n_rows, hidden).contiguous()
        weighted_cos, cos = _CosineLoss.apply(hs, ht, real, alpha_cos, backend)
        total = total + weighted_cos
    return DistillationLossOutput(total, kl, mlm, cos)


class DistillationLoss(nn.Module):
    """nn.Module holding the options of `distillation_loss`; call it with the tensors."""

    def __init__(
        self,
        *,
        temperature: float = 2.0,
        alpha_kl: float = 5.0,
        alpha_mlm: float = 2.0,
        alpha_cos: float = 1.0,
        kl_on: str = "tokens",
        backend: str = "auto",
        validate: bool = True,
    ):
        super().__init__()
        # validate once, at construction, so a bad config fails before training starts
        self.temperature, self.alpha_kl, self.alpha_mlm, self.alpha_cos = _check_options(
            temperature, alpha_kl, alpha_mlm, alpha_cos, kl_on, backend
        )
        self.kl_on = kl_on
        self.backend = backend
        self.validate = bool(validate)

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
            student_logits,
            teacher_logits,
            labels,
            attention_mask,
            student_hidden,
            teacher_hidden,
            temperature=self.temperature,
            alpha_kl=self.alpha_kl,
            alpha_mlm=self.alpha_mlm,
            alpha_cos=self.alpha_cos,
            kl_on=self.kl_on,
            backend=self.backend,
            validate=self.validate,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, alpha_kl={self.alpha_kl}, alpha_mlm={self.alpha_mlm}, "
            f"alpha_cos={self.alpha_cos}, kl_on={self.kl_on!r}, backend={self.backend!r}"
        )
