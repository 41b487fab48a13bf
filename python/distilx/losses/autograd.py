"""The autograd glue of the loss: each term's gradient is formed in the forward and only scaled in the backward.

`LogitsLoss` (KL + MLM over [N, V] logits) and `CosineLoss` (hidden states) dispatch to the Triton
kernels (`distilx.triton_kernels`, CUDA) or the chunked PyTorch path (`losses/chunked.py`). No `.item()`
and no data-dependent Python branch runs inside forward or backward.
"""

from __future__ import annotations

import functools

import torch

from . import chunked
from .defaults import IGNORE_INDEX


def logits_impl(backend: str):
    """The per-row KL + CE implementation of a backend (contract: `chunked.chunked_logits_loss`)."""
    if backend == "triton":
        from ..triton_kernels import fused_logits_loss

        return fused_logits_loss
    return chunked.chunked_logits_loss


def _cosine_impl(backend: str):
    if backend == "triton":
        from ..triton_kernels import fused_cosine_loss

        return fused_cosine_loss
    return chunked.cosine_rows


def scale_stored_grad(ctx, grad_output: torch.Tensor):
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


def _outside_autocast(forward):
    """Run a loss forward with autocast off: autocast would compute the PyTorch path's softmaxes and
    reductions in bf16, while the loss accumulates in fp32 whatever its inputs' dtypes (kept as given)."""
    @functools.wraps(forward)
    def wrapped(ctx, first, *args):
        with torch.autocast(first.device.type, enabled=False):
            return forward(ctx, first, *args)
    return wrapped


class LogitsLoss(torch.autograd.Function):
    """alpha_kl * KL + alpha_mlm * MLM over [N, V] logits; the gradient is formed in the forward.

    Forward returns (weighted, kl, mlm): weighted = alpha_kl*KL + alpha_mlm*MLM (differentiable w.r.t.
    the student logits only), kl and mlm unweighted and non-differentiable.
    d weighted / d s[r] = alpha_kl*T/n_kl * (softmax(s/T) - softmax(t/T))[r] * [r in KL rows]
                        + alpha_mlm/n_mlm * (softmax(s) - onehot(label))[r] * [label[r] != -100]
    The stored gradient is scaled in place by grad_output in backward, so backward runs once per
    forward (a second backward through the same graph raises RuntimeError; float64 excepted).
    """

    @staticmethod
    @_outside_autocast
    def forward(ctx, student, teacher, labels, kl_mask, temperature, alpha_kl, alpha_mlm, backend):
        has_kl, has_ce = alpha_kl > 0, alpha_mlm > 0
        # counts stay on the device (no host sync); fp64 so fp64 inputs keep full precision
        n_kl = kl_mask.sum().clamp_min(1).double()
        n_mlm = (labels != IGNORE_INDEX).sum().clamp_min(1).double()
        grad_scales = torch.stack([alpha_kl * temperature / n_kl, alpha_mlm / n_mlm])
        write_grad = ctx.needs_input_grad[0]
        kl_rows, ce_rows, grad = logits_impl(backend)(
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
        return scale_stored_grad(ctx, grad_weighted), None, None, None, None, None, None, None


class CosineLoss(torch.autograd.Function):
    """alpha_cos * mean over real rows of (1 - cos(h_s, h_t)), gradient formed in the forward.

    Forward returns (weighted, cos_term). d/d h_s[r] = -alpha_cos/n * (h_t/sqrt(AB) - cos * h_s/A)
    with A = |h_s|^2 + eps, B = |h_t|^2 + eps, for real rows r (0 elsewhere).
    """

    @staticmethod
    @_outside_autocast
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
        return scale_stored_grad(ctx, grad_weighted), None, None, None, None
