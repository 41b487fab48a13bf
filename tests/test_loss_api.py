"""Bad input to distillation_loss raises a clear exception naming the problem (and the fix)."""

from __future__ import annotations

import pytest
import torch

import distilx


def _ok(n=2, length=3, vocab=11, hidden=4):
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(n, length, vocab, generator=gen)
    t = torch.randn(n, length, vocab, generator=gen)
    labels = torch.randint(0, vocab, (n, length), generator=gen)
    mask = torch.ones(n, length, dtype=torch.long)
    hs = torch.randn(n, length, hidden, generator=gen)
    ht = torch.randn(n, length, hidden, generator=gen)
    return s, t, labels, mask, hs, ht


def test_valid_call_works():
    out = distilx.distillation_loss(*_ok(), backend="torch")
    assert torch.isfinite(out.loss) and out.loss > 0


@pytest.mark.parametrize(
    "mutate, error, pattern",
    [
        (lambda a: a.__setitem__(1, torch.randn(2, 3, 12)), ValueError, "vocabulary mismatch"),
        (lambda a: a.__setitem__(1, torch.randn(2, 4, 11)), ValueError, "same batch"),
        (lambda a: a.__setitem__(0, torch.randn(66, 1, 2, 11)), ValueError, r"\[B, L, V\] or \[N, V\]"),
        (lambda a: a.__setitem__(2, torch.randint(0, 11, (2, 4))), ValueError, "labels shape"),
        (lambda a: a.__setitem__(2, a[2].float()), TypeError, "labels must be an integer"),
        (lambda a: a.__setitem__(2, torch.full((2, 3), 11)), ValueError, r"\[0, 11\)"),
        (lambda a: a.__setitem__(2, torch.full((2, 3), -5)), ValueError, "labels must be -100"),
        (lambda a: a.__setitem__(0, torch.ones(2, 3, 11, dtype=torch.long)), TypeError, "floating-point"),
        (lambda a: a.__setitem__(3, torch.ones(2, 4)), ValueError, "attention_mask shape"),
        (lambda a: a.__setitem__(5, None), ValueError, "both student_hidden and teacher_hidden"),
        (lambda a: a.__setitem__(5, torch.randn(2, 3, 5)), ValueError, "hidden sizes differ"),
        (lambda a: a.__setitem__(4, torch.randn(2, 2, 4)), ValueError, "leading shape"),
        (lambda a: a.__setitem__(0, "logits"), TypeError, "torch.Tensor"),
    ],
)
def test_bad_tensors_raise(mutate, error, pattern):
    args = list(_ok())
    mutate(args)
    with pytest.raises(error, match=pattern):
        distilx.distillation_loss(*args, backend="torch")


@pytest.mark.parametrize(
    "options, pattern",
    [
        (dict(temperature=0.0), "temperature must be > 0"),
        (dict(temperature=float("nan")), "temperature must be a finite"),
        (dict(alpha_kl=-1.0), "alpha_kl must be a finite number >= 0"),
        (dict(alpha_cos=float("inf")), "alpha_cos"),
        (dict(kl_on="all"), "kl_on must be one of"),
        (dict(backend="cuda"), "backend must be one of"),
    ],
)
def test_bad_options_raise(options, pattern):
    with pytest.raises(ValueError, match=pattern):
        distilx.distillation_loss(*_ok(), **options)
    with pytest.raises(ValueError, match=pattern):
        distilx.DistillationLoss(**options)


def test_triton_backend_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="backend='triton' needs CUDA tensors"):
        distilx.distillation_loss(*_ok(), backend="triton")


def test_triton_backend_rejects_float64():
    s, t, labels, mask, hs, ht = _ok()
    with pytest.raises(TypeError, match="float32, float16 and bfloat16"):
        distilx.distillation_loss(s.double(), t, labels, mask, backend="triton")


def test_auto_backend_on_cpu_is_torch_and_matches():
    a = distilx.distillation_loss(*_ok())
    b = distilx.distillation_loss(*_ok(), backend="torch")
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


def test_exports():
    assert set(distilx.DistillationLossOutput._fields) == {"loss", "kl", "mlm", "cos"}
    assert isinstance(distilx.DistillationLoss(), torch.nn.Module)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy sees the NaN it produces
def test_validate_false_turns_bad_labels_into_nan_instead_of_raising():
    s, t, labels, mask, hs, ht = _ok()
    labels = labels.clone()
    labels[0, 0] = 11
    with pytest.raises(ValueError, match="labels must be -100"):
        distilx.DistillationLoss(backend="torch")(s, t, labels, mask)
    out = distilx.DistillationLoss(backend="torch", validate=False)(s, t, labels, mask)
    assert torch.isnan(out.mlm) and torch.isnan(out.loss)
    triton_out = distilx.distillation_loss(s, t, labels, mask, backend="triton", validate=False)
    assert torch.isnan(triton_out.mlm)


def test_autocast_does_not_lower_the_loss_precision():
    """Under CPU bf16 autocast the PyTorch path used to compute the KL softmaxes in bf16 (about 2e-4
    relative off for fp32 logits); the loss and its gradient must equal the fp32 ones."""
    s, t, labels, mask, hs, ht = _ok(n=4, length=16, vocab=3001, hidden=32)
    s = (s * 4).requires_grad_()
    plain = distilx.distillation_loss(s, t, labels, mask, hs, ht, backend="torch")
    (grad_plain,) = torch.autograd.grad(plain.loss, s)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = distilx.distillation_loss(s, t, labels, mask, hs, ht, backend="torch")
    (grad_under,) = torch.autograd.grad(under.loss, s)
    for name in ("loss", "kl", "mlm", "cos"):
        torch.testing.assert_close(getattr(under, name), getattr(plain, name), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad_under, grad_plain, rtol=1e-6, atol=1e-9)
