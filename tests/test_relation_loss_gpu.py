"""GPU-only checks of the relation-KL kernels (decided at run time; `pytest -m gpu` on a CUDA machine).

On the device, at training shapes (B = 4, L = 512, R = 12, student d_r = 32, teacher d_r = 64, with padding): the Triton
path against the PyTorch path on the same inputs (bf16 students: the PyTorch path computes in fp32 from the
same bf16 values, so the kernels' bf16 tensor-core dots with fp32 accumulation are held to it), fp32
inputs (IEEE dots), a bf16 student with an fp32 teacher, the eager reference under bf16 autocast staying
finite, and the memory bound: the Triton path's extra memory is the three gradients plus O(B R L), never
an L x L relation. Tolerances: values rtol 1e-4 (fp32 sums in another order); gradients 2^-6 relative
plus 2^-8 of the largest entry in bf16, 1e-4 / 1e-5 of the largest in fp32.
"""

from __future__ import annotations

import pytest
import torch

import distilx
from conftest import has_cuda
from distilx.losses.relation_reference import reference_relation_loss

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif("not has_cuda()", reason="needs a CUDA device (run on a lent GPU with `pytest -m gpu`)"),
]

GRAD_TOL = {torch.bfloat16: (2**-6, 2**-8), torch.float32: (1e-4, 1e-5)}


def _inputs(batch, length, width_s, width_t, dtype_s, dtype_t, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    students = [torch.randn(batch, length, width_s, device="cuda", generator=gen).to(dtype_s).requires_grad_()
                for _ in range(3)]
    teachers = [(torch.randn(batch, length, width_t, device="cuda", generator=gen)).to(dtype_t) for _ in range(3)]
    mask = torch.ones(batch, length, dtype=torch.long, device="cuda")
    mask[-1, length // 3:] = 0  # padding in the last sequence (a third real) and, with 3+, in the second
    if batch > 2:
        mask[1, length - length // 5:] = 0
    return students, teachers, mask


def _run(backend, students, teachers, mask, heads=12):
    out = distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=heads, backend=backend)
    grads = torch.autograd.grad(out.loss * 0.37, students)
    return out, grads


# three kernel configurations (each compiled once; the other tests reuse the first): a MiniLM-sized bf16
# student under a BERT-base-sized bf16 teacher, the same with an fp32 teacher, and fp32 on both sides
@pytest.mark.parametrize("dtype_s,dtype_t,d_s,d_t", [
    (torch.bfloat16, torch.bfloat16, 32, 64),
    (torch.bfloat16, torch.float32, 32, 64),
    (torch.float32, torch.float32, 32, 64),
])
def test_triton_matches_the_torch_path_at_training_shapes(dtype_s, dtype_t, d_s, d_t):
    students, teachers, mask = _inputs(4, 512, 12 * d_s, 12 * d_t, dtype_s, dtype_t)
    ours, grads = _run("triton", students, teachers, mask)
    ref, ref_grads = _run("torch", students, teachers, mask)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    rtol, atol = GRAD_TOL[dtype_s]
    for a, b in zip(grads, ref_grads):
        assert a.dtype == dtype_s
        torch.testing.assert_close(a.float(), b.float(), rtol=rtol, atol=atol * b.float().abs().max().item())
    assert ours.loss > 0.1


def test_eager_reference_under_autocast_is_finite_and_close():
    """The benchmark's eager side runs under bf16 autocast: its padding must stay finite there."""
    students, teachers, mask = _inputs(4, 256, 384, 768, torch.bfloat16, torch.bfloat16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        eager = reference_relation_loss(*students, *teachers, mask, relation_heads=12)[0]
    ours = distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=12)
    assert torch.isfinite(eager)
    # bf16 relation scores (autocast's matmul) against fp32 ones: the same loss to within 10%
    torch.testing.assert_close(eager.float(), ours.loss, rtol=0.1, atol=1e-3)


def test_extra_memory_holds_no_relation_matrix():
    batch, length, heads = 8, 2048, 12
    students, teachers, mask = _inputs(batch, length, heads * 32, heads * 64, torch.bfloat16, torch.bfloat16)
    distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=heads).loss.backward()  # warm-up
    for s in students:
        s.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=heads).loss.backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    gradients = 3 * students[0].numel() * students[0].element_size()
    one_relation = batch * heads * length * length * 4  # one fp32 [B, R, L, L]: 1.5 GiB here
    # the stored gradients (and, if autograd copies them into .grad, a second set) plus 3 fp32 [B, R, L]
    # statistics per term, with 8 MiB of slack
    assert extra <= 2 * gradients + 3 * 3 * batch * heads * length * 4 + (8 << 20), (extra, gradients)
    assert extra < one_relation / 10


def test_auto_takes_the_torch_path_for_what_the_kernels_do_not_handle():
    """float64, and relation heads wider than MAX_HEAD_DIM: "auto" falls back to the PyTorch path on the
    GPU (an explicit backend="triton" refuses them with a message)."""
    for dtype, width in [(torch.float64, 48), (torch.float32, 2 * 320)]:
        students, teachers, mask = _inputs(2, 64, width, width, dtype, dtype)
        auto = distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=2)
        plain = distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=2, backend="torch")
        torch.testing.assert_close(auto.loss, plain.loss)
        with pytest.raises((TypeError, ValueError), match="backend='torch'"):
            distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=2, backend="triton")
