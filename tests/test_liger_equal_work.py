"""The Liger sides of the benchmarks compute distilx's quantity once the scale is accounted for
(bench/bench_liger.py): the fused-linear identity with Liger's own chunked code, the logits identity with the
PyTorch modules that Liger's kernels replace (its Triton kernels do not run under the interpreter).

liger-kernel is not a runtime dependency: scripts/bootstrap.sh installs it (--no-deps: pure Python; its chunked
loss needs only torch) so that the suite runs the fused-linear test; it skips where liger-kernel is absent."""

import sys
from pathlib import Path

import pytest
import torch

import distilx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_liger  # noqa: E402

T, A_KL, A_MLM = 2.0, 5.0, 2.0


def _projection_case(seed, n=24, hidden=8, vocab=37, labelled=0.5, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype)  # noqa: E731
    case = dict(x_s=r(n, hidden), w_s=r(vocab, hidden), b_s=r(vocab), x_t=r(n, hidden), w_t=r(vocab, hidden),
                b_t=r(vocab))
    labels = torch.randint(0, vocab, (n,), generator=gen)
    labels[torch.rand(n, generator=gen) >= labelled] = -100
    case["labels"] = labels
    for key in ("x_s", "w_s", "b_s"):
        case[key].requires_grad_(True)
    return case


def _grads(loss, case):
    return torch.autograd.grad(loss, [case["x_s"], case["w_s"], case["b_s"]])


@pytest.mark.parametrize("labelled", [1.0, 0.5])
def test_liger_fused_linear_jsd_at_beta_0_is_distilx_fused_linear(labelled):
    liger = pytest.importorskip("liger_kernel.chunked_loss")
    case = _projection_case(3, labelled=labelled)
    module = bench_liger.fused_linear_module(liger.LigerFusedLinearJSDLoss, temperature=T, alpha_kl=A_KL,
                                             alpha_mlm=A_MLM, compiled=False, chunk_size=8)
    theirs = module(case["x_s"], case["w_s"], case["x_t"], case["w_t"], case["labels"], case["b_s"], case["b_t"])
    ours = distilx.fused_linear_distillation_loss(
        case["x_s"], case["w_s"], case["x_t"], case["w_t"], case["labels"], student_bias=case["b_s"],
        teacher_bias=case["b_t"], temperature=T, alpha_kl=A_KL, alpha_mlm=A_MLM, alpha_cos=0.0, kl_on="targets",
        chunk_size=8).loss
    # Liger accumulates its loss in an fp32 scalar: agreement to fp32 precision
    torch.testing.assert_close(theirs.double(), ours, rtol=1e-6, atol=1e-6)
    for a, b in zip(_grads(theirs, case), _grads(ours, case)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    # and the weights are not the identity: without the T^2 factor the values differ
    plain = liger.LigerFusedLinearJSDLoss(beta=0.0, temperature=T, compiled=False, weight_soft_loss=A_KL,
                                          weight_hard_loss=A_MLM)
    other = plain(case["x_s"], case["w_s"], case["x_t"], case["w_t"], case["labels"], case["b_s"], case["b_t"])
    assert abs(other.item() - ours.item()) > 1e-3


def test_liger_logits_formula_is_distilx_loss():
    """LigerKLDIVLoss / LigerCrossEntropyLoss are drop-ins for torch.nn.KLDivLoss / CrossEntropyLoss (their
    documented contract): with those, the benchmark's Liger formula equals distillation_loss(alpha_cos=0)."""
    gen = torch.Generator().manual_seed(5)
    s = (torch.randn(20, 41, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    t = torch.randn(20, 41, generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(0, 41, (20,), generator=gen)
    labels[torch.rand(20, generator=gen) < 0.85] = -100
    labels[0] = 7  # at least one target
    kl = torch.nn.KLDivLoss(reduction="batchmean", log_target=True)
    ce = torch.nn.CrossEntropyLoss(ignore_index=-100)
    theirs = bench_liger.logits_loss(s.double(), t, labels, kl, ce, temperature=T, alpha_kl=A_KL, alpha_mlm=A_MLM)
    ours = distilx.distillation_loss(s, t, labels, temperature=T, alpha_kl=A_KL, alpha_mlm=A_MLM, alpha_cos=0.0,
                                     backend="torch").loss
    # logits_loss upcasts to fp32 (as autocast would): agreement to fp32 precision
    torch.testing.assert_close(theirs.double(), ours, rtol=1e-5, atol=1e-5)
    (g_theirs,) = torch.autograd.grad(theirs, s)
    (g_ours,) = torch.autograd.grad(ours, s)
    torch.testing.assert_close(g_theirs.double(), g_ours, rtol=1e-4, atol=1e-7)


def test_soft_hard_weights_carry_the_temperature_square():
    assert bench_liger.soft_hard_weights(2.0, 5.0, 2.0) == {"weight_soft_loss": 20.0, "weight_hard_loss": 2.0}
    assert bench_liger.soft_hard_weights(1.0, 0.5, 0.5) == {"weight_soft_loss": 0.5, "weight_hard_loss": 0.5}
