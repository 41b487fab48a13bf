"""Liger-Kernel at equal work with distilx: the Liger sides of bench/bench_loss.py and bench/bench_fused_linear.py,
and the scale accounting that makes them compute distilx's quantity.

Logits level (`logits_loss`): Liger's KL kernel (LigerKLDIVLoss, which takes log-probabilities: the user
forms log_softmax(s/T) and log_softmax(t/T) in PyTorch, fp32 as autocast would) and its cross-entropy kernel
(LigerCrossEntropyLoss) give
    alpha_kl * T^2 * KL_batchmean + alpha_mlm * CE  ==  distilx.distillation_loss(s, t, labels, alpha_cos=0)
with the KL over every row (kl_on="tokens", no padding rows).

Fused linear (`fused_linear_module`): LigerFusedLinearJSDLoss with beta = 0 is the forward KL(teacher ||
student) at temperature T over the rows whose label is not -100, normalised by their count, mixed with the
hard-label CE by its weights and without the T^2 factor; so with
    weight_soft_loss = alpha_kl * T^2, weight_hard_loss = alpha_mlm
it equals distilx.fused_linear_distillation_loss(..., alpha_cos=0, kl_on="targets") (no hidden-state cosine
there). With every row labelled both project every row (equal work); with 15% labelled distilx projects only
those rows while Liger projects all of them and masks (the same quantity, not the same work).

tests/test_liger_equal_work.py checks both identities on the CPU: the fused-linear one with Liger's own
chunked code (pure PyTorch, compiled=False); the logits one with the PyTorch modules Liger's kernels
replace (torch.nn.KLDivLoss / CrossEntropyLoss): Liger's Triton kernels do not run under the interpreter.
Where liger-kernel is not installed, `load()` returns None and says why.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def load(log=print):
    """Liger's three modules as a dict, or None (printed reason) when liger-kernel does not import."""
    try:
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss
        from liger_kernel.transformers import LigerCrossEntropyLoss, LigerKLDIVLoss
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        log(f"# liger-kernel not importable ({type(exc).__name__}: {exc}): Liger comparison skipped")
        return None
    import liger_kernel

    return {"version": getattr(liger_kernel, "__version__", None) or _dist_version(),
            "kl": LigerKLDIVLoss, "ce": LigerCrossEntropyLoss, "jsd": LigerFusedLinearJSDLoss}


def _dist_version():
    try:
        from importlib.metadata import version

        return version("liger-kernel")
    except Exception:  # noqa: BLE001
        return None


def soft_hard_weights(temperature: float, alpha_kl: float, alpha_mlm: float) -> dict:
    """LigerFusedLinearJSDLoss's weights for distilx's alpha_kl * T^2 * KL + alpha_mlm * CE."""
    return dict(weight_soft_loss=alpha_kl * temperature**2, weight_hard_loss=alpha_mlm)


def logits_loss(s, t, labels, kl_module, ce_module, *, temperature, alpha_kl, alpha_mlm):
    """alpha_kl * T^2 * KL(softmax(t/T) || softmax(s/T)) (batch mean) + alpha_mlm * CE(s, labels)."""
    log_ps = F.log_softmax(s.float() / temperature, dim=-1)
    with torch.no_grad():
        log_pt = F.log_softmax(t.float() / temperature, dim=-1)
    return alpha_kl * temperature**2 * kl_module(log_ps, log_pt) + alpha_mlm * ce_module(s, labels)


def logits_modules(liger, ignore_index=-100):
    return liger["kl"](reduction="batchmean", log_target=True), liger["ce"](ignore_index=ignore_index)


def fused_linear_module(jsd_class, *, temperature, alpha_kl, alpha_mlm, compiled=True, chunk_size=1024):
    """LigerFusedLinearJSDLoss at beta 0 with distilx's scale; call it (x_s, W_s, x_t, W_t, labels, b_s, b_t)."""
    return jsd_class(beta=0.0, temperature=temperature, compiled=compiled, chunk_size=chunk_size,
                     **soft_hard_weights(temperature, alpha_kl, alpha_mlm))
