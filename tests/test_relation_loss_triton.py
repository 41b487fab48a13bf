"""The fused relation-KL Triton kernels (distilx.triton_kernels.relation) under TRITON_INTERPRET=1.

Compared with the chunked PyTorch path (itself checked against two transcriptions in
tests/test_relation_loss.py) and directly with the eager reference, on tiny shapes (the interpreter runs
each program's block ops in numpy). Blocks of 16 rows/keys on lengths 21 and 37 exercise several row and
key blocks, a last partial block, and a first key block made only of padding (left padding: the online
softmax's running max stays -inf there). Tolerances (both paths accumulate in fp32):
  fp32: values rtol 1e-5, gradients rtol 1e-4 / atol 1e-5 of the largest entry (an entry is a sum of
        cancelling terms: G's rows sum to 0);
  bf16: gradients 2^-6 relative + 2^-8 of the largest entry (two roundings to bf16 on each side, and the
        interpreter truncates fp32 -> bf16 where PyTorch rounds to nearest);
  fp16: 2^-9 relative + 2^-10 of the largest entry.
"""

from __future__ import annotations

import pytest
import torch

import distilx
from distilx.losses import relation
from distilx.losses.relation_reference import reference_relation_loss
from distilx.triton_kernels import relation as kernels
from test_relation_loss import _batch, _loss_and_grads, single_torch_thread  # noqa: F401 (autouse fixture)

# The interpreter evaluates masked-off lanes with numpy and warns about the -inf arithmetic it discards.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

GRAD_TOL = {torch.float32: (1e-4, 1e-5), torch.float16: (2**-9, 2**-10), torch.bfloat16: (2**-6, 2**-8)}


@pytest.fixture
def blocks(monkeypatch, request):
    """Launch the kernels with (BLOCK_M, BLOCK_N) = request.param instead of config_for's choice."""
    chosen = getattr(request, "param", None)
    if chosen is not None:
        launch = kernels.fused_relation_kl
        monkeypatch.setattr(relation, "relation_impl",
                            lambda backend: (lambda *args: launch(*args, blocks=chosen)) if backend == "triton"
                            else relation.chunked_relation_kl)
    return chosen


def _compare(students, teachers, mask, heads=4, grad_out=0.37, dtype=torch.float32):
    ours, ours_grads = _loss_and_grads(distilx.relation_distillation_loss, students, teachers, mask, grad_out,
                                       relation_heads=heads, backend="triton")
    torch_out, torch_grads = _loss_and_grads(distilx.relation_distillation_loss, students, teachers, mask, grad_out,
                                             relation_heads=heads, backend="torch")
    for name, a, b in zip(("loss", "qq", "kk", "vv"), ours, torch_out):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    rtol, atol = GRAD_TOL[dtype]
    for a, b in zip(ours_grads, torch_grads):
        assert a.dtype == b.dtype == students[0].dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=rtol, atol=atol * b.float().abs().max().item())
    return ours, ours_grads


@pytest.mark.parametrize("blocks", [None, (16, 16)], indirect=True)
def test_fp32_matches_the_torch_path_and_the_reference(blocks):
    students, teachers, mask = _batch(length=37)
    mask[0, :19] = 0  # left padding: sequence 0's first key block (16 keys) is all padding
    ours, grads = _compare(students, teachers, mask)
    ref, ref_grads = _loss_and_grads(reference_relation_loss, students, teachers, mask, relation_heads=4)
    torch.testing.assert_close(ours.loss, ref[0].detach(), rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())
    assert all(g[0, :19].abs().max() == 0 and g[1, 7:].abs().max() == 0 for g in grads)


@pytest.mark.parametrize("blocks", [(16, 16)], indirect=True)
@pytest.mark.parametrize("heads,h_s,h_t", [(1, 16, 64), (3, 9, 48)])
def test_relation_heads_and_widths_that_differ(blocks, heads, h_s, h_t):
    """d_s != d_t, a single relation head, head blocks padded (d = 3 and 16 in a 16-column block)."""
    students, teachers, mask = _batch(batch=2, length=21, h_s=h_s, h_t=h_t, padded=False)
    mask[1, 18:] = 0
    _compare(students, teachers, mask, heads=heads)


@pytest.mark.parametrize("blocks", [(16, 16)], indirect=True)
@pytest.mark.parametrize("dt_s,dt_t", [(torch.bfloat16, torch.float32), (torch.float16, torch.bfloat16),
                                       (torch.float32, torch.bfloat16)])
def test_dtypes_that_differ(blocks, dt_s, dt_t):
    students, teachers, mask = _batch(batch=2, length=21, dtype_s=dt_s, dtype_t=dt_t, padded=False)
    mask[1, 10:] = 0
    ours, _ = _compare(students, teachers, mask, dtype=dt_s)
    assert ours.loss.dtype == torch.float32 and ours.loss > 0.1


@pytest.mark.parametrize("case", ["all_real", "one_real_token", "none_real", "one_sequence_all_padding"])
def test_masks(case):
    students, teachers, mask = _batch(batch=2, length=9, padded=False)
    if case == "one_real_token":
        mask.zero_()
        mask[0, 5] = 1
    elif case == "none_real":
        mask.zero_()
    elif case == "one_sequence_all_padding":
        mask[1] = 0
    ours, grads = _compare(students, teachers, mask)
    if case in ("one_real_token", "none_real"):
        assert ours.loss == 0 and all(g.abs().max() == 0 for g in grads)
    else:
        assert ours.loss > 0


def test_nan_in_padding_is_ignored_and_nan_in_a_real_token_is_not():
    students, teachers, mask = _batch(batch=2, length=9, padded=False)
    mask[1, 6:] = 0
    clean, clean_grads = _loss_and_grads(distilx.relation_distillation_loss, students, teachers, mask,
                                         relation_heads=4, backend="triton")
    dirty_s = [s.detach().clone() for s in students]
    dirty_t = [t.clone() for t in teachers]
    for x in dirty_s + dirty_t:
        x[1, 6:] = float("nan")
    dirty, dirty_grads = _loss_and_grads(distilx.relation_distillation_loss, [s.requires_grad_() for s in dirty_s],
                                         dirty_t, mask, relation_heads=4, backend="triton")
    torch.testing.assert_close(dirty.loss, clean.loss)
    for a, b in zip(dirty_grads, clean_grads):
        torch.testing.assert_close(a, b)
    dirty_t[2][0, 2, 3] = float("inf")
    out = distilx.relation_distillation_loss(*dirty_s, *dirty_t, mask, relation_heads=4, backend="triton")
    assert not torch.isfinite(out.vv) and torch.isfinite(out.qq)


def test_no_grad_forward_and_strided_projections():
    students, teachers, mask = _batch(batch=2, length=9, padded=False)
    mask[0, 7:] = 0
    with torch.no_grad():
        plain = distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=4, backend="triton")
    fused = torch.cat([s.detach() for s in students], dim=-1).requires_grad_()  # [B, L, 3H]: row stride 3H
    out = distilx.relation_distillation_loss(*fused.split(24, dim=-1), *teachers, mask, relation_heads=4,
                                             backend="triton")
    (grad,) = torch.autograd.grad(out.loss * 0.37, fused)
    ref, ref_grads = _loss_and_grads(distilx.relation_distillation_loss, students, teachers, mask, relation_heads=4,
                                     backend="torch")
    torch.testing.assert_close(plain.loss, ref.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-6)
    expected = torch.cat(ref_grads, dim=-1)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def test_wide_relation_heads_are_refused_with_a_pointer_to_the_torch_path():
    students, teachers, mask = _batch(batch=1, length=3, h_s=2 * 264, h_t=24, padded=False)
    with pytest.raises(ValueError, match="relation heads of up to 256 columns, got d_r = 264; use more relation_heads or backend='torch'"):
        distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=2, backend="triton")


def test_block_configurations():
    """Blocks shrink as relation heads widen and for fp32 (IEEE) dots; every choice is in CONFIGS (which
    the ahead-of-time compile test compiles) and satisfies tl.dot's 16-element minimum."""
    assert kernels.config_for(32, 32, False) == (64, 64, 4)  # MiniLM-L6 (384 / 12) and its narrower students
    assert kernels.config_for(32, 64, False) == (64, 32, 4)  # BERT-base teacher (768 / 12)
    assert kernels.config_for(32, 64, True) == (32, 32, 4)
    for d in range(1, kernels.MAX_HEAD_DIM + 1, 7):
        for fp32 in (False, True):
            block_m, block_n, warps = kernels.config_for(d, 1, fp32)
            assert (block_m, block_n, warps, kernels.head_block(d), fp32) in kernels.CONFIGS or \
                kernels.head_block(d) not in (16, 32, 64, 128, 256)
            assert min(block_m, block_n) >= 16 and block_m * block_n * kernels.head_block(d) <= 64 * 64 * 64
    assert [kernels.head_block(d) for d in (1, 6, 16, 17, 33, 256)] == [16, 16, 16, 32, 64, 256]
