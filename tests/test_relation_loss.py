"""MiniLMv2's relation loss (`distilx.relation_distillation_loss`), PyTorch path, against plain transcriptions.

Two independent oracles:
* `distilx.losses.relation_reference` (the eager formula on the padded batch, padding keys masked with
  the most negative finite score, as BERT-style masks do), the benchmarks' baseline;
* `_per_sequence_transcription` below: MiniLMv2's formula written sequence by sequence on the real
  tokens only (padding cut off, nothing masked), so the masking semantics are checked independently.
Plus float64 gradcheck, masks (padding, all real, one real token, none), R != heads, H_s != H_t,
teacher/student dtypes that differ, blocks not dividing L, and bad input. The Triton kernels have
their own file (tests/test_relation_loss_triton.py).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import distilx
from distilx.losses import relation_chunked
from distilx.losses.relation_reference import reference_relation_loss


@pytest.fixture(autouse=True)
def single_torch_thread():
    """One intra-op thread: tiny tensors on a shared 2-core machine (see tests/test_loss_torch.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _per_sequence_transcription(students, teachers, mask, heads):
    """(total, [qq, kk, vv]): for each sequence, keep its real tokens, split each side into `heads` relation
    heads, KL(softmax(T Tᵀ/√d_t) ‖ softmax(A Aᵀ/√d_s)) per query row, averaged over heads and real tokens."""
    terms = []
    for s_all, t_all in zip(students, teachers):
        total, count = 0.0, 0
        for b in range(s_all.shape[0]):
            keep = mask[b] != 0
            s, t = s_all[b][keep], t_all[b][keep]
            n = s.shape[0]
            if n == 0:
                continue
            dtype = torch.promote_types(s.dtype, torch.float32)
            s = s.to(dtype).reshape(n, heads, -1).transpose(0, 1)  # [R, n, d_s]
            t = t.to(dtype).detach().reshape(n, heads, -1).transpose(0, 1)
            log_ps = F.log_softmax(s @ s.transpose(1, 2) / math.sqrt(s.shape[-1]), dim=-1)
            p_t = F.softmax(t @ t.transpose(1, 2) / math.sqrt(t.shape[-1]), dim=-1)
            total = total + (p_t * (p_t.log() - log_ps)).sum()  # sum over heads, queries and keys
            count += n
        terms.append(total / (heads * max(count, 1)) if count else s_all.sum() * 0)
    return sum(terms), terms


def _batch(batch=3, length=13, h_s=24, h_t=36, dtype_s=torch.float32, dtype_t=torch.float32, seed=0, padded=True):
    """Six projections and a mask: sequence 1 padded after 7 tokens, sequence 2 has one real token."""
    gen = torch.Generator().manual_seed(seed)
    students = [(torch.randn(batch, length, h_s, generator=gen) * 1.5).to(dtype_s).requires_grad_() for _ in range(3)]
    teachers = [(torch.randn(batch, length, h_t, generator=gen) * 1.5).to(dtype_t) for _ in range(3)]
    mask = torch.ones(batch, length, dtype=torch.long)
    if padded:
        mask[1, 7:] = 0
        mask[2, 1:] = 0
    return students, teachers, mask


def _loss_and_grads(fn, students, teachers, mask, grad_out=0.37, **kw):
    out = fn(*students, *teachers, mask, **kw)
    grads = torch.autograd.grad(out[0] * grad_out, students)
    return out, grads


@pytest.mark.parametrize("heads,h_s,h_t", [(4, 24, 36), (1, 8, 8), (6, 12, 48), (3, 9, 6)])
def test_torch_path_equals_both_transcriptions(heads, h_s, h_t):
    students, teachers, mask = _batch(h_s=h_s, h_t=h_t)
    out, grads = _loss_and_grads(distilx.relation_distillation_loss, students, teachers, mask,
                                 relation_heads=heads, backend="torch")
    ref, ref_grads = _loss_and_grads(reference_relation_loss, students, teachers, mask, relation_heads=heads)
    seq_total, seq_terms = _per_sequence_transcription(students, teachers, mask, heads)
    seq_grads = torch.autograd.grad(seq_total * 0.37, students)
    for name, ours, eager, seq in zip(("loss", "qq", "kk", "vv"), out, ref, [seq_total, *seq_terms]):
        torch.testing.assert_close(ours, eager.detach(), rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(ours, seq.detach(), rtol=1e-5, atol=1e-6, msg=name)
    assert out.qq > 0.05 and out.loss.requires_grad and not out.qq.requires_grad
    for ours, eager, seq in zip(grads, ref_grads, seq_grads):
        torch.testing.assert_close(ours, eager, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(ours, seq, rtol=1e-4, atol=1e-7)
        assert ours[1, 7:].abs().max() == 0 and ours[2, 1:].abs().max() == 0  # padding: zero gradient
        assert ours[0].abs().max() > 1e-4


@pytest.mark.parametrize("budget", [1, 13 * 5, 13 * 13 * 4, 10**6])
def test_blocks_not_dividing_the_length_give_the_same_result(monkeypatch, budget):
    """Blocks of 1 row x 1 pair, 5 rows, 13 rows x 4 pairs (L = 13 is prime), and one block; groups of one
    sequence (the first three) and of all three."""
    monkeypatch.setattr(relation_chunked, "_BLOCK_ELEMENTS", budget)
    monkeypatch.setattr(relation_chunked, "_GROUP_ELEMENTS", budget)
    students, teachers, mask = _batch()
    out, grads = _loss_and_grads(distilx.relation_distillation_loss, students, teachers, mask,
                                 relation_heads=4, backend="torch")
    ref, ref_grads = _loss_and_grads(reference_relation_loss, students, teachers, mask, relation_heads=4)
    torch.testing.assert_close(out.loss, ref[0].detach(), rtol=1e-5, atol=1e-6)
    for ours, eager in zip(grads, ref_grads):
        torch.testing.assert_close(ours, eager, rtol=1e-4, atol=1e-7)


def test_block_rule_bounds_and_balances_the_block():
    assert relation_chunked.relation_block(384, 512) == (16, 128)  # B = 32, R = 12, L = 512: 1M elements
    assert relation_chunked.relation_block(384, 128) == (64, 128)
    assert relation_chunked.relation_block(24, 512) == (12, 128)  # 12 + 12 pairs, not 16 + 8
    assert relation_chunked.relation_block(4, 300, budget=4 * 300 * 130) == (4, 100)  # 3 x 100 rows, not 128 + 128 + 44
    nb, rows = relation_chunked.relation_block(4, 1 << 22)  # a 4M-token sequence: one row at a time
    assert (nb, rows) == (1, 1)
    for pairs, length in [(1, 1), (7, 13), (384, 4096), (10**4, 100), (37, 129)]:
        nb, rows = relation_chunked.relation_block(pairs, length)
        assert 1 <= nb <= pairs and 1 <= rows <= length
        assert nb * rows * length <= max(relation_chunked._BLOCK_ELEMENTS, length)


def test_float64_gradcheck():
    students, teachers, mask = _batch(batch=2, length=6, h_s=6, h_t=4, dtype_s=torch.float64,
                                      dtype_t=torch.float64, padded=False)
    mask[1, 4:] = 0

    def fn(sq, sk, sv):
        return distilx.relation_distillation_loss(sq, sk, sv, *teachers, mask, relation_heads=2, backend="torch").loss

    assert torch.autograd.gradcheck(fn, tuple(students), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_float64_values_equal_the_transcription_to_1e12():
    students, teachers, mask = _batch(dtype_s=torch.float64, dtype_t=torch.float64)
    out, grads = _loss_and_grads(distilx.relation_distillation_loss, students, teachers, mask, relation_heads=4)
    seq_total, _ = _per_sequence_transcription(students, teachers, mask, 4)
    seq_grads = torch.autograd.grad(seq_total * 0.37, students)
    torch.testing.assert_close(out.loss, seq_total.detach(), rtol=1e-12, atol=1e-14)
    for ours, seq in zip(grads, seq_grads):
        torch.testing.assert_close(ours, seq, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("case", ["all_real", "one_real_token", "none_real", "mask_none"])
def test_masks(case):
    students, teachers, mask = _batch(padded=False)
    if case == "one_real_token":
        mask.zero_()
        mask[1, 4] = 1
    elif case == "none_real":
        mask.zero_()
    out, grads = _loss_and_grads(distilx.relation_distillation_loss, students, teachers,
                                 None if case == "mask_none" else mask, relation_heads=4)
    seq_total, _ = _per_sequence_transcription(students, teachers, mask, 4)
    torch.testing.assert_close(out.loss, seq_total.detach(), rtol=1e-5, atol=1e-6)
    if case in ("one_real_token", "none_real"):
        # a single token's relation is softmax over one key: both sides are 1, the KL is 0
        assert out.loss == 0 and all(g.abs().max() == 0 for g in grads)
    else:
        assert out.loss > 0


def test_dtypes_may_differ_and_accumulate_in_fp32():
    """bf16 student with an fp32 teacher (and fp16 with bf16): compared with the transcription on the same
    rounded inputs in fp32; the gradient comes back in the student's dtype."""
    for dt_s, dt_t in [(torch.bfloat16, torch.float32), (torch.float16, torch.bfloat16), (torch.float32, torch.float16)]:
        students, teachers, mask = _batch(dtype_s=dt_s, dtype_t=dt_t)
        out, grads = _loss_and_grads(distilx.relation_distillation_loss, students, teachers, mask, relation_heads=4)
        assert out.loss.dtype == torch.float32
        up = [s.detach().float().requires_grad_() for s in students]
        seq_total, _ = _per_sequence_transcription(up, [t.float() for t in teachers], mask, 4)
        seq_grads = torch.autograd.grad(seq_total * 0.37, up)
        torch.testing.assert_close(out.loss, seq_total.detach(), rtol=1e-5, atol=1e-6)
        for ours, seq in zip(grads, seq_grads):
            assert ours.dtype == dt_s
            # the fp32 gradient rounded to the student dtype, then scaled by grad_output in that dtype (the
            # house's in-place backward): two roundings, up to 2^-7 relative in bf16, plus fp32 noise
            torch.testing.assert_close(ours.float(), seq, rtol=2**-7, atol=1e-3 * seq.abs().max().item())


def test_nan_in_padding_is_ignored():
    students, teachers, mask = _batch()
    clean, clean_grads = _loss_and_grads(distilx.relation_distillation_loss, students, teachers, mask, relation_heads=4)
    dirty_s = [s.detach().clone() for s in students]
    dirty_t = [t.clone() for t in teachers]
    for x in dirty_s + dirty_t:
        x[1, 7:] = float("nan")
        x[2, 5] = float("inf")
    dirty_s = [s.requires_grad_() for s in dirty_s]
    dirty, dirty_grads = _loss_and_grads(distilx.relation_distillation_loss, dirty_s, dirty_t, mask, relation_heads=4)
    assert torch.isnan(dirty_s[0][1, 7:]).all() and torch.isnan(dirty_t[0][1, 7:]).all()  # inputs left as they were
    torch.testing.assert_close(dirty.loss, clean.loss)
    for a, b in zip(dirty_grads, clean_grads):
        torch.testing.assert_close(a, b)


def test_nan_in_a_real_token_makes_the_loss_nan():
    students, teachers, mask = _batch()
    with torch.no_grad():
        students[0][0, 3, 0] = float("nan")
    out = distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=4)
    assert torch.isnan(out.qq) and torch.isnan(out.loss) and torch.isfinite(out.kk)


def test_teacher_gets_no_gradient_and_second_backward_raises():
    students, teachers, mask = _batch()
    teachers = [t.clone().requires_grad_() for t in teachers]
    out = distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=4)
    out.loss.backward()
    assert all(t.grad is None for t in teachers) and all(s.grad is not None for s in students)
    with pytest.raises(RuntimeError, match="back-propagated twice"):
        out.loss.backward()


def test_default_relation_heads_is_12_and_no_grad_forward_writes_no_gradient():
    students, teachers, mask = _batch(h_s=24, h_t=36)
    with torch.no_grad():
        out = distilx.relation_distillation_loss(*students, *teachers, mask)
    ref = reference_relation_loss(*students, *teachers, mask, relation_heads=distilx.losses.RELATION_HEADS)
    assert distilx.losses.RELATION_HEADS == 12 and not out.loss.requires_grad
    torch.testing.assert_close(out.loss, ref[0].detach(), rtol=1e-5, atol=1e-6)


def test_strided_projections_are_read_as_they_are():
    """Q, K and V as column slices of one fused [B, L, 3H] projection (some architectures' layout)."""
    students, teachers, mask = _batch()
    fused = torch.cat([s.detach() for s in students], dim=-1).requires_grad_()
    views = fused.split(24, dim=-1)
    out = distilx.relation_distillation_loss(*views, *teachers, mask, relation_heads=4)
    (grad,) = torch.autograd.grad(out.loss * 0.37, fused)
    ref, ref_grads = _loss_and_grads(reference_relation_loss, students, teachers, mask, relation_heads=4)
    torch.testing.assert_close(out.loss, ref[0].detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, torch.cat(ref_grads, dim=-1), rtol=1e-4, atol=1e-7)


def test_exports():
    assert distilx.RelationLossOutput._fields == ("loss", "qq", "kk", "vv")
    assert distilx.relation_distillation_loss is distilx.losses.relation_distillation_loss


# ---------------------------------------------------------------- bad input
def _call(students=None, teachers=None, mask="ok", **kw):
    ok_s, ok_t, ok_mask = _batch()
    return distilx.relation_distillation_loss(*(students or ok_s), *(teachers or ok_t),
                                              ok_mask if isinstance(mask, str) else mask, **kw)


@pytest.mark.parametrize("change,error,match", [
    (lambda s, t, m: ([s[0][:, :5], s[1], s[2]], t, m), ValueError, r"teacher_q is \[B, L\] = \(3, 13\) but student_q is \(3, 5\)"),
    (lambda s, t, m: (s, [t[0][:2], t[1], t[2]], m), ValueError, r"teacher_q is \[B, L\] = \(2, 13\)"),
    (lambda s, t, m: ([s[0][0], s[1], s[2]], t, m), ValueError, r"student_q must be \[B, L, H\]"),
    (lambda s, t, m: (s, t, m[:, :5]), ValueError, r"attention_mask shape \(3, 5\) must be \[B, L\] = \(3, 13\)"),
    (lambda s, t, m: (s, t, m[None]), ValueError, "attention_mask shape"),
    (lambda s, t, m: ([s[0], s[1].long(), s[2]], t, m), TypeError, "student_k must be a floating-point tensor"),
    (lambda s, t, m: (s, [t[0], t[1], t[2].numpy()], m), TypeError, "teacher_v must be a torch.Tensor"),
])
def test_bad_shapes_are_refused_with_a_clear_message(change, error, match):
    students, teachers, mask = change(*_batch())
    with pytest.raises(error, match=match):
        distilx.relation_distillation_loss(*students, *teachers, mask, relation_heads=4)


def test_widths_not_divisible_by_the_relation_heads_are_refused():
    with pytest.raises(ValueError, match="student_q has width 24, not divisible by relation_heads=5; pick relation_heads"):
        _call(relation_heads=5)
    with pytest.raises(ValueError, match="teacher_q has width 36, not divisible by relation_heads=8"):
        _call(relation_heads=8)


@pytest.mark.parametrize("heads,error", [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError), ("4", TypeError)])
def test_bad_relation_heads(heads, error):
    with pytest.raises(error, match="relation_heads must be"):
        _call(relation_heads=heads)


def test_bad_backend_and_triton_on_cpu(monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of"):
        _call(relation_heads=4, backend="cuda")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="backend='triton' needs CUDA tensors"):
        _call(relation_heads=4, backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    s, t, _ = _batch(dtype_s=torch.float64)
    with pytest.raises(TypeError, match="backend='triton' supports float32, float16 and bfloat16"):
        _call(students=s, relation_heads=4, backend="triton")
