"""The fused KL + CE Triton kernel vs the PyTorch path (itself checked against the reference formulas).

On a CPU machine the kernel runs under TRITON_INTERPRET=1 (set by conftest), so the shapes are small.
Tolerances (kernel vs PyTorch path, both accumulating in fp32):
  fp32 values rtol 1e-5 / atol 1e-5; fp32 gradients rtol 1e-4 / atol 1e-7 (entries are O(1/n));
  fp16 gradients rtol 2^-9 / atol 1e-6; bf16 gradients rtol 2^-6 / atol 1e-6 (up to two ulps: the CPU
  interpreter truncates fp32 -> bf16 where the GPU and PyTorch round to nearest; the GPU-only test
  checks the 2^-8 half-ulp bound).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import distilx
from distilx.triton_kernels.distill_logits import config_for, fused_logits_loss
from test_loss_torch import _args, rxnfp_batch, single_torch_thread  # noqa: F401 (autouse fixture)

GRAD_TOL = {
    torch.float32: dict(rtol=1e-4, atol=1e-7),
    torch.float16: dict(rtol=2**-9, atol=1e-6),
    torch.bfloat16: dict(rtol=2**-6, atol=1e-6),
}

# The interpreter evaluates masked-off lanes with numpy and warns about the -inf arithmetic it discards.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _both(args, grad_out=0.37, **options):
    """(outputs, grads) for backend='triton' and backend='torch' on copies of the same inputs."""
    results = []
    for backend in ("triton", "torch"):
        copies = [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args]
        out = distilx.distillation_loss(*copies, backend=backend, **options)
        leaves = [c for c in copies if isinstance(c, torch.Tensor) and c.requires_grad]
        grads = torch.autograd.grad(out.loss * grad_out, leaves) if out.loss.requires_grad else []
        results.append((out, grads))
    return results


def _assert_match(triton_result, torch_result, dtype=torch.float32):
    (out_a, grads_a), (out_b, grads_b) = triton_result, torch_result
    for name, a, b in zip(("loss", "kl", "mlm", "cos"), out_a, out_b):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-5, atol=1e-5, msg=f"{name} differs")
    assert len(grads_a) == len(grads_b)
    for a, b in zip(grads_a, grads_b):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), **GRAD_TOL[dtype])


@pytest.mark.parametrize("temperature,kl_on", [(1.0, "targets"), (2.0, "tokens"), (4.0, "tokens")])
def test_real_rxnfp_logits_match_torch_path(temperature, kl_on):
    b = rxnfp_batch(n_seq=2)  # the interpreter runs ~one row per 10 ms: two real reactions
    ours, ref = _both(_args(b), temperature=temperature, kl_on=kl_on)
    _assert_match(ours, ref)
    assert ours[0].kl > 0 and ours[0].mlm > 0


def _synthetic(n_seq, seq_len, vocab, seed, dtype=torch.float32):
    """Rows with and without labels, padding rows, one all-padding sequence, and maxima in late blocks."""
    gen = torch.Generator().manual_seed(seed)
    shape = (n_seq, seq_len, vocab)
    s = torch.randn(shape, generator=gen) * 4
    t = torch.randn(shape, generator=gen) * 4
    # the running max must move in a later block: spike the last columns of some rows
    s[0, 0, -3] = 30.0
    t[0, 1, -1] = 40.0
    labels = torch.randint(0, vocab, shape[:2], generator=gen)
    labels[torch.rand(shape[:2], generator=gen) < 0.6] = -100
    labels[0, 2] = vocab - 1  # a label in the tail block
    mask = torch.ones(shape[:2], dtype=torch.long)
    mask[1, seq_len // 2:] = 0  # padding
    mask[-1] = 0  # an all-padding sequence
    labels[mask == 0] = -100
    return s.to(dtype).requires_grad_(True), t.to(dtype), labels, mask


@pytest.mark.parametrize("vocab", [1021, 2039, 5003])
@pytest.mark.parametrize("kl_on", ["tokens", "targets"])
def test_odd_vocabularies_padding_and_grad_output(vocab, kl_on):
    block, _ = config_for(vocab)
    s, t, labels, mask = _synthetic(3, 5, vocab, seed=vocab)
    assert s.shape[-1] % block != 0  # a partial tail block
    ours, ref = _both((s, t, labels, mask), grad_out=-2.5, kl_on=kl_on, temperature=2.0)
    _assert_match(ours, ref)
    grad = ours[1][0]
    assert torch.count_nonzero(grad[mask == 0]) == 0, "padding rows must get a zero gradient"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_student_and_mixed_teacher(dtype):
    s, t, labels, mask = _synthetic(2, 4, 2039, seed=7, dtype=dtype)
    t = t.float()  # the teacher may come in another dtype
    ours, ref = _both((s, t, labels, mask))
    _assert_match(ours, ref, dtype)
    assert ours[1][0].dtype == dtype


@pytest.mark.parametrize("alphas", [(0.0, 2.0), (5.0, 0.0)])
def test_zero_weight_terms(alphas):
    alpha_kl, alpha_mlm = alphas
    s, t, labels, mask = _synthetic(2, 4, 1021, seed=3)
    ours, ref = _both((s, t, labels, mask), alpha_kl=alpha_kl, alpha_mlm=alpha_mlm)
    _assert_match(ours, ref)
    if alpha_kl == 0:
        assert ours[0].kl == 0
    else:
        assert ours[0].mlm == 0


def test_forward_without_gradient_matches():
    s, t, labels, mask = _synthetic(2, 4, 1021, seed=5)
    with torch.no_grad():
        a = distilx.distillation_loss(s, t, labels, mask, backend="triton")
        b = distilx.distillation_loss(s, t, labels, mask, backend="torch")
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_no_labels_and_all_padding():
    s, t, labels, mask = _synthetic(2, 4, 1021, seed=11)
    none = torch.full_like(labels, -100)
    ours, ref = _both((s, t, none, mask), kl_on="targets")
    _assert_match(ours, ref)
    assert ours[0].loss == 0 and torch.count_nonzero(ours[1][0]) == 0
    ours, ref = _both((s, t, none, torch.zeros_like(mask)))
    _assert_match(ours, ref)
    assert ours[0].loss == 0 and torch.count_nonzero(ours[1][0]) == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("side", [0, 1])
def test_non_finite_logits_agree_with_torch_path(bad, side, column=5):
    s, t, labels, mask = _synthetic(2, 3, 1021, seed=13)
    tensors = [s.detach().clone(), t.clone()]
    tensors[side][0, 0, column] = bad  # a real row
    tensors[side][1, 2, column] = bad  # a padding row: ignored
    a = distilx.distillation_loss(tensors[0], tensors[1], labels, mask, backend="triton")
    b = distilx.distillation_loss(tensors[0], tensors[1], labels, mask, backend="torch")
    assert not torch.isfinite(a.loss) and not torch.isfinite(b.loss)


def test_out_of_range_label_gives_nan_when_validation_is_skipped():
    """Under CUDA-graph capture the label check is skipped; the kernel must then give NaN, not a value."""
    s, t, labels, mask = _synthetic(2, 3, 1021, seed=17)
    flat_labels = torch.full((6,), -100, dtype=torch.long)
    flat_labels[1] = 5000
    flat_labels[2] = -7
    kl_mask = torch.ones(6, dtype=torch.bool)
    scales = torch.tensor([1.0, 1.0], dtype=torch.float64)
    _, ce_rows, _ = fused_logits_loss(s.detach().reshape(6, -1), t.reshape(6, -1), flat_labels, kl_mask, scales,
                                      2.0, True, True, False)
    assert torch.isnan(ce_rows[1]) and torch.isnan(ce_rows[2]) and ce_rows[0] == 0


def test_empty_batch():
    s = torch.zeros(0, 1021, requires_grad=True)
    out = distilx.distillation_loss(s, torch.zeros(0, 1021), torch.zeros(0, dtype=torch.long), backend="triton")
    assert out.loss == 0
    out.loss.backward()
    assert s.grad.shape == s.shape


def test_config_choice():
    assert config_for(591) == (1024, 4)
    assert config_for(30522)[0] == 4096
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        big = torch.zeros(1, 262_145)
    with pytest.raises(ValueError, match="262144"):
        fused_logits_loss(big, big, torch.zeros(1, dtype=torch.long), torch.ones(1, dtype=torch.bool),
                          torch.ones(2, dtype=torch.float64), 2.0, True, True, False)


def test_strided_one_d_labels():
    """[N] labels that are a strided view (a column of a wider tensor) reach the kernel row by row."""
    s, t, labels, mask = _synthetic(2, 4, 1021, seed=19)
    s, t, mask = s.reshape(8, -1), t.reshape(8, -1), mask.reshape(8)
    wide = torch.stack([labels.reshape(8), torch.full((8,), 7)], dim=1)  # column 1 is a wrong label
    strided = wide[:, 0]
    assert strided.stride(0) == 2
    with torch.no_grad():
        a = distilx.distillation_loss(s, t, strided, mask, backend="triton", kl_on="targets")
        b = distilx.distillation_loss(s, t, strided.contiguous(), mask, backend="torch", kl_on="targets")
    assert b.mlm > 0
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
