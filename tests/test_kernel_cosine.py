"""The fused cosine Triton kernel vs the PyTorch path (checked against CosineEmbeddingLoss).

Runs under TRITON_INTERPRET=1 on a CPU machine. Tolerances: fp32 values rtol 1e-5 / atol 1e-6,
fp32 gradients rtol 1e-4 / atol 1e-8; bf16 gradients rtol 2^-6 / atol 1e-7.
"""

from __future__ import annotations

import pytest
import torch

import distilx
from distilx.losses.reference import reference_distillation_loss
from distilx.triton_kernels.cosine import config_for
from test_loss_torch import rxnfp_batch, single_torch_thread  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _cos_only(backend, hs, ht, mask, grad_out=1.0):
    hs = hs.detach().clone().requires_grad_(True)
    n, v = hs.shape[0], 7
    logits = torch.zeros(n, v)  # alpha_kl = alpha_mlm = 0: logits are not touched
    labels = torch.full((n,), -100)
    out = distilx.distillation_loss(logits, logits, labels, mask, hs, ht, alpha_kl=0.0, alpha_mlm=0.0,
                                    alpha_cos=1.5, backend=backend)
    (grad,) = torch.autograd.grad(out.loss * grad_out, hs)
    return out, grad


def test_real_hidden_states_match_torch_path_and_reference():
    b = rxnfp_batch(n_seq=3)
    h = b["student_hidden"].shape[-1]
    hs = b["student_hidden"].detach().reshape(-1, h)
    ht = b["teacher_hidden"].reshape(-1, h)
    mask = b["attention_mask"].reshape(-1)
    ours, g_ours = _cos_only("triton", hs, ht, mask, grad_out=0.37)
    torch_path, g_torch = _cos_only("torch", hs, ht, mask, grad_out=0.37)
    torch.testing.assert_close(ours.cos, torch_path.cos, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_ours, g_torch, rtol=1e-4, atol=1e-8)
    ref = reference_distillation_loss(torch.zeros(hs.shape[0], 7), torch.zeros(hs.shape[0], 7),
                                      torch.full((hs.shape[0],), -100), mask, hs, ht, alpha_kl=0, alpha_mlm=0)
    torch.testing.assert_close(ours.cos, ref[3], rtol=1e-5, atol=1e-6)
    assert 0 < ours.cos < 2
    assert torch.count_nonzero(g_ours[mask == 0]) == 0


@pytest.mark.parametrize("hidden", [1, 100, 1000, 3000])
def test_odd_hidden_sizes_zero_rows_and_padding(hidden):
    gen = torch.Generator().manual_seed(hidden)
    hs = torch.randn(9, hidden, generator=gen)
    ht = torch.randn(9, hidden, generator=gen)
    hs[2] = 0.0  # a zero vector: eps keeps cos finite
    ht[3] = 0.0
    mask = torch.ones(9, dtype=torch.long)
    mask[-2:] = 0
    hs[-1] = float("nan")  # padding: ignored
    ours, g_ours = _cos_only("triton", hs, ht, mask, grad_out=-3.0)
    ref, g_ref = _cos_only("torch", hs, ht, mask, grad_out=-3.0)
    torch.testing.assert_close(ours.cos, ref.cos, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-8)
    assert torch.isfinite(g_ours).all()
    assert config_for(hidden)[0] >= hidden


def test_bf16_hidden_states():
    gen = torch.Generator().manual_seed(0)
    hs = torch.randn(6, 256, generator=gen).bfloat16()
    ht = torch.randn(6, 256, generator=gen).bfloat16()
    mask = torch.ones(6, dtype=torch.long)
    ours, g_ours = _cos_only("triton", hs, ht, mask)
    ref, g_ref = _cos_only("torch", hs, ht, mask)
    torch.testing.assert_close(ours.cos, ref.cos, rtol=1e-5, atol=1e-6)
    assert g_ours.dtype == torch.bfloat16
    torch.testing.assert_close(g_ours.float(), g_ref.float(), rtol=2**-6, atol=1e-7)
