"""fused_linear_distillation_loss vs distillation_loss on the explicit logits input @ weight.T + bias.

Real weights first: the rxnfp 12-layer BERT (trained MLM head) as teacher and its 6-layer copy as
student, on real reaction SMILES; the projection inputs are the MLM heads' transform outputs and the
weights their decoders (the student's decoder is tied to its word embeddings, as in BERT), checked
against the models' own logits. Then synthetic shapes for what real batches rarely contain: rows
without labels, padding, an all-padding sequence, chunk sizes that do not divide N, tied
teacher/student weights, float64/float32 gradcheck, the Triton kernels under TRITON_INTERPRET=1,
autocast, bad input, and the chunk-size and `auto` rules.

Tolerances (fp32): values rtol 1e-5 / atol 1e-5; gradients rtol 1e-4 and atol 1e-6 x the largest entry
(the fused path multiplies the chunked gradient by the weights chunk by chunk, the explicit path in one
matmul: the sums differ in order only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import distilx
from distilx.losses import fused_linear
from distilx.losses.fused_linear import free_memory_bytes, fused_linear_chunk_rows, fused_linear_pays
from distilx.losses.reference import reference_distillation_loss
from distilx.models.adapters import adapter_for
from test_loss_torch import _rxnfp_models, rxnfp_batch, single_torch_thread  # noqa: F401 (autouse fixture)

STUDENT_SIDE = ("x_s", "w_s", "b_s", "h_s")


def _leaves(case):
    """Fresh copies of a case's tensors; the student's projection input, weight, bias and hidden need grad."""
    out = {}
    for key, value in case.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().clone()
            if key in STUDENT_SIDE:
                value.requires_grad_(True)
        out[key] = value
    return out


def _fused(case, grad_out=0.37, **options):
    c = _leaves(case)
    out = distilx.fused_linear_distillation_loss(
        c["x_s"], c["w_s"], c["x_t"], c["w_t"], c["labels"], student_bias=c["b_s"], teacher_bias=c["b_t"],
        student_hidden=c["h_s"], teacher_hidden=c["h_t"], attention_mask=c["mask"], **options,
    )
    grads = torch.autograd.grad(out.loss * grad_out, [c[k] for k in STUDENT_SIDE]) if out.loss.requires_grad else ()
    return out, grads


def _explicit(case, grad_out=0.37, oracle=False, **options):
    """distillation_loss (or, with oracle=True, the eager DistilBERT formula) on the materialised logits."""
    c = _leaves(case)
    s = c["x_s"] @ c["w_s"].T + c["b_s"]
    t = c["x_t"] @ c["w_t"].T + c["b_t"]
    args = (s, t, c["labels"], c["mask"], c["h_s"], c["h_t"])
    if oracle:
        out = reference_distillation_loss(*args, **options)
    else:
        out = distilx.distillation_loss(*args, backend="torch", **options)
    grads = torch.autograd.grad(out[0] * grad_out, [c[k] for k in STUDENT_SIDE])
    return out, grads


def _assert_same(fused, explicit, value_tol=1e-5, grad_rtol=1e-4):
    (out_a, grads_a), (out_b, grads_b) = fused, explicit
    for name, a, b in zip(("loss", "kl", "mlm", "cos"), out_a, out_b):
        torch.testing.assert_close(a.detach().double(), b.detach().double(), rtol=value_tol, atol=value_tol,
                                   msg=lambda m, name=name: f"{name}: {m}")
    for name, a, b in zip(STUDENT_SIDE, grads_a, grads_b):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        scale = b.abs().max().item()
        torch.testing.assert_close(a, b, rtol=grad_rtol, atol=1e-6 * scale + 1e-12,
                                   msg=lambda m, name=name: f"d loss / d {name}: {m}")


# ---------------------------------------------------------------- real weights: rxnfp
def _rxnfp_head_case(seed=0):
    """Projection inputs (the MLM heads' transform outputs), decoders and hidden states of rxnfp teacher/student,
    taken through distilx's model adapter table (head_transform, decoder)."""
    teacher, student, _ = _rxnfp_models()
    batch = rxnfp_batch(seed)
    case = dict(labels=batch["labels"], mask=batch["attention_mask"], h_s=batch["student_hidden"],
                h_t=batch["teacher_hidden"], logits_s=batch["student_logits"], logits_t=batch["teacher_logits"])
    with torch.no_grad():
        for side, model in (("s", student), ("t", teacher)):
            adapter = adapter_for(model)  # the MLM head split as the training loop will use it
            case[f"x_{side}"] = adapter.head_transform(model, case[f"h_{side}"].detach())
            case[f"w_{side}"], case[f"b_{side}"] = adapter.decoder(model)
    return case


def test_rxnfp_head_decomposition_reproduces_the_models_logits():
    """transform(h) @ decoder.weight.T + decoder.bias is what BertForMaskedLM outputs: the inputs are right."""
    c = _rxnfp_head_case()
    assert c["w_s"] is _rxnfp_models()[1].bert.embeddings.word_embeddings.weight, "BERT ties the decoder"
    torch.testing.assert_close(c["x_s"] @ c["w_s"].T + c["b_s"], c["logits_s"].detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(c["x_t"] @ c["w_t"].T + c["b_t"], c["logits_t"].detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kl_on", ["tokens", "targets"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_real_rxnfp_head_values_and_gradients(kl_on, temperature):
    c = _rxnfp_head_case()
    n_rows = c["labels"].numel()
    chunk = 7
    assert n_rows % chunk != 0, "the last chunk must be partial"
    fused = _fused(c, kl_on=kl_on, temperature=temperature, chunk_size=chunk)
    explicit = _explicit(c, kl_on=kl_on, temperature=temperature)
    _assert_same(fused, explicit)
    assert fused[0].kl > 0 and fused[0].mlm > 0 and fused[0].cos > 0
    # the eager DistilBERT formula (the oracle of every other loss test) agrees too
    _assert_same(fused, _explicit(c, kl_on=kl_on, temperature=temperature, oracle=True))


# ---------------------------------------------------------------- synthetic shapes
def _case(n_seq=3, seq_len=6, hidden_s=12, hidden_t=20, vocab=53, dtype=torch.float32, seed=0):
    """Rows with and without labels, padding rows, one all-padding sequence, teacher H != student H."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, std=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * std).to(dtype)

    shape = (n_seq, seq_len)
    labels = torch.randint(0, vocab, shape, generator=gen)
    labels[torch.rand(shape, generator=gen) < 0.6] = -100
    mask = torch.ones(shape, dtype=torch.long)
    mask[1, seq_len // 2:] = 0
    mask[-1] = 0
    labels[mask == 0] = -100
    labels[0, 0] = vocab - 1
    return dict(
        x_s=randn(*shape, hidden_s), w_s=randn(vocab, hidden_s, std=hidden_s**-0.5 * 3), b_s=randn(vocab, std=0.3),
        x_t=randn(*shape, hidden_t), w_t=randn(vocab, hidden_t, std=hidden_t**-0.5 * 3), b_t=randn(vocab, std=0.3),
        labels=labels, mask=mask, h_s=randn(*shape, 8), h_t=randn(*shape, 8),
    )


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 18, 1000, None])
@pytest.mark.parametrize("kl_on", ["tokens", "targets"])
def test_chunk_sizes_that_do_not_divide_n(chunk_size, kl_on):
    c = _case()
    _assert_same(_fused(c, kl_on=kl_on, chunk_size=chunk_size, grad_out=-2.5), _explicit(c, kl_on=kl_on, grad_out=-2.5))


@pytest.mark.parametrize("kl_on", ["tokens", "targets"])
def test_gradcheck_float64(kl_on):
    c = _case(n_seq=2, seq_len=4, hidden_s=5, hidden_t=6, vocab=11, dtype=torch.float64, seed=1)
    inputs = [c[k].clone().requires_grad_(True) for k in STUDENT_SIDE]

    def f(x_s, w_s, b_s, h_s):
        return distilx.fused_linear_distillation_loss(
            x_s, w_s, c["x_t"], c["w_t"], c["labels"], student_bias=b_s, teacher_bias=c["b_t"], student_hidden=h_s,
            teacher_hidden=c["h_t"], attention_mask=c["mask"], kl_on=kl_on, chunk_size=3,
        ).loss

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradcheck_float32():
    """The fp32 path (in-place gradient buffers, fp32 accumulators) against central differences, entry by entry.

    torch.autograd.gradcheck back-propagates twice through one forward, which the stored-gradient design
    refuses in fp32 (it scales in place), so the finite differences are taken here, in float64 on the same
    function: the fp32 analytic gradient must match them to fp32 accuracy.
    """
    c = _case(n_seq=2, seq_len=3, hidden_s=4, hidden_t=5, vocab=7, seed=2)

    def f(x_s, w_s, b_s, h_s):
        dtype = x_s.dtype
        return distilx.fused_linear_distillation_loss(
            x_s, w_s, c["x_t"].to(dtype), c["w_t"].to(dtype), c["labels"], student_bias=b_s,
            teacher_bias=c["b_t"].to(dtype), student_hidden=h_s, teacher_hidden=c["h_t"].to(dtype),
            attention_mask=c["mask"], chunk_size=2,
        ).loss

    inputs = [c[k].clone().requires_grad_(True) for k in STUDENT_SIDE]
    analytic = torch.autograd.grad(f(*inputs), inputs)
    eps = 1e-6
    for i, (x, grad) in enumerate(zip(inputs, analytic)):
        assert grad.dtype == torch.float32
        numeric = torch.zeros(x.shape, dtype=torch.float64)
        for j in range(x.numel()):
            point = [t.detach().double() for t in inputs]
            flat = point[i].view(-1)
            flat[j] += eps
            up = f(*point).item()
            flat[j] -= 2 * eps
            numeric.view(-1)[j] = (up - f(*point).item()) / (2 * eps)
        torch.testing.assert_close(grad.double(), numeric, rtol=1e-4, atol=1e-5 * numeric.abs().max().item(),
                                   msg=lambda m, i=i: f"d loss / d {STUDENT_SIDE[i]}: {m}")


def test_rows_without_labels_and_all_padding():
    c = _case(seed=3)
    c["labels"] = torch.full_like(c["labels"], -100)
    fused, explicit = _fused(c), _explicit(c)
    _assert_same(fused, explicit)
    assert fused[0].mlm == 0 and fused[0].kl > 0
    # KL only on targets and no target: nothing reaches the vocabulary; every gradient but the cosine's is 0
    fused = _fused(c, kl_on="targets")
    _assert_same(fused, _explicit(c, kl_on="targets"))
    assert fused[0].kl == 0 and fused[0].mlm == 0
    for name, grad in zip(STUDENT_SIDE[:3], fused[1][:3]):
        assert torch.count_nonzero(grad) == 0, name
    c["mask"] = torch.zeros_like(c["mask"])
    fused = _fused(c)
    assert fused[0].loss == 0
    assert all(torch.count_nonzero(g) == 0 for g in fused[1])


def test_padding_rows_get_zero_input_gradient_and_are_ignored():
    c = _case(seed=4)
    fused = _fused(c)
    pad = c["mask"] == 0
    assert torch.count_nonzero(fused[1][0][pad]) == 0
    dirty = dict(c, x_s=c["x_s"].clone(), x_t=c["x_t"].clone())
    dirty["x_s"][pad] = float("nan")  # never projected (CPU gathers the rows it needs)
    dirty["x_t"][pad] = float("inf")
    _assert_same(_fused(dirty), fused, value_tol=0, grad_rtol=0)


def test_hidden_states_with_rows_of_their_own():
    """The training loop's kl_on="targets" shape: projection inputs for the labelled rows only, the cosine
    on every real token ([M, H] rows of their own, all counted), as distillation_loss takes them."""
    c = _case(seed=16)
    target = c["labels"] != -100
    real = c["mask"] != 0
    only_targets = dict(c, x_s=c["x_s"][target], x_t=c["x_t"][target], labels=c["labels"][target],
                        mask=torch.ones(int(target.sum()), dtype=torch.long), h_s=c["h_s"][real], h_t=c["h_t"][real])
    assert only_targets["h_s"].shape[0] != only_targets["x_s"].shape[0]
    fused = _fused(only_targets, kl_on="targets", chunk_size=3)
    _assert_same(fused, _explicit(only_targets, kl_on="targets"))
    # the same terms as the full batch with kl_on="targets": only labelled rows reach the vocabulary
    full = _fused(c, kl_on="targets")
    for a, b in zip(fused[0], full[0]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_non_finite_input_in_a_real_row_makes_the_loss_non_finite():
    c = _case(seed=5)
    c["x_t"] = c["x_t"].clone()
    c["x_t"][0, 1, 0] = float("nan")
    assert not torch.isfinite(_fused(c)[0].loss)


def test_tied_teacher_and_student_weights():
    """One decoder tensor on both sides: only the student projection contributes to its gradient."""
    c = _case(hidden_t=12, seed=6)
    w = c["w_s"].clone().requires_grad_(True)
    b = c["b_s"].clone().requires_grad_(True)
    x_s = c["x_s"].clone().requires_grad_(True)
    out = distilx.fused_linear_distillation_loss(
        x_s, w, c["x_t"], w, c["labels"], student_bias=b, teacher_bias=b, attention_mask=c["mask"], chunk_size=5
    )
    grads = torch.autograd.grad(out.loss, [x_s, w, b])
    x_s2, w2, b2 = (t.detach().clone().requires_grad_(True) for t in (x_s, w, b))
    teacher_logits = (c["x_t"] @ w2.T + b2).detach()
    ref = distilx.distillation_loss(x_s2 @ w2.T + b2, teacher_logits, c["labels"], c["mask"], backend="torch")
    ref_grads = torch.autograd.grad(ref.loss, [x_s2, w2, b2])
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-5)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-6 * r.abs().max().item())


def test_teacher_tensors_get_no_gradient():
    c = _leaves(_case(seed=7))
    for key in ("x_t", "w_t", "b_t", "h_t"):
        c[key].requires_grad_(True)
    out = distilx.fused_linear_distillation_loss(
        c["x_s"], c["w_s"], c["x_t"], c["w_t"], c["labels"], student_bias=c["b_s"], teacher_bias=c["b_t"],
        student_hidden=c["h_s"], teacher_hidden=c["h_t"], attention_mask=c["mask"],
    )
    out.loss.backward()
    assert all(c[k].grad is None for k in ("x_t", "w_t", "b_t", "h_t"))
    assert all(c[k].grad is not None for k in STUDENT_SIDE)


def test_without_bias_and_hidden_states_and_zero_weights():
    c = _case(seed=8)
    x_s, w_s = c["x_s"].clone().requires_grad_(True), c["w_s"].clone().requires_grad_(True)
    for alphas in [dict(), dict(alpha_kl=0.0), dict(alpha_mlm=0.0), dict(alpha_kl=0.0, alpha_mlm=0.0)]:
        out = distilx.fused_linear_distillation_loss(x_s, w_s, c["x_t"], c["w_t"], c["labels"],
                                                     attention_mask=c["mask"], **alphas)
        ref = distilx.distillation_loss(x_s @ w_s.T, c["x_t"] @ c["w_t"].T, c["labels"], c["mask"], **alphas)
        for a, r in zip(out, ref):
            torch.testing.assert_close(a.detach(), r.detach(), rtol=1e-5, atol=1e-5)
        if out.loss.requires_grad:
            for a, r in zip(torch.autograd.grad(out.loss, [x_s, w_s]), torch.autograd.grad(ref.loss, [x_s, w_s])):
                torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-6 * r.abs().max().item())
        else:
            assert out.loss == 0 and ref.loss == 0


def test_frozen_decoder_and_no_grad_forward():
    c = _case(seed=9)
    x_s = c["x_s"].clone().requires_grad_(True)
    out = distilx.fused_linear_distillation_loss(x_s, c["w_s"], c["x_t"], c["w_t"], c["labels"], attention_mask=c["mask"])
    (grad,) = torch.autograd.grad(out.loss, [x_s])
    x_s2 = c["x_s"].clone().requires_grad_(True)
    ref = distilx.distillation_loss(x_s2 @ c["w_s"].T, c["x_t"] @ c["w_t"].T, c["labels"], c["mask"])
    torch.testing.assert_close(grad, torch.autograd.grad(ref.loss, [x_s2])[0], rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        evaluation = _fused(c)[0]
    for a, r in zip(evaluation, _fused(c)[0]):
        torch.testing.assert_close(a.detach(), r.detach())


def test_second_backward_raises():
    c = _leaves(_case(seed=10))
    out = distilx.fused_linear_distillation_loss(c["x_s"], c["w_s"], c["x_t"], c["w_t"], c["labels"])
    out.loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="back-propagated twice"):
        out.loss.backward()


def test_autocast_bf16_projects_like_linear_under_autocast():
    """fp32 weights, bf16 autocast: the projection runs in bf16 like nn.Linear; weight gradient in fp32."""
    c = _case(seed=11, vocab=97)
    leaves_a, leaves_b = _leaves(c), _leaves(c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = distilx.fused_linear_distillation_loss(
            leaves_a["x_s"], leaves_a["w_s"], leaves_a["x_t"], leaves_a["w_t"], c["labels"],
            student_bias=leaves_a["b_s"], teacher_bias=leaves_a["b_t"], attention_mask=c["mask"], chunk_size=4,
        )
        s = torch.nn.functional.linear(leaves_b["x_s"], leaves_b["w_s"], leaves_b["b_s"])
        t = torch.nn.functional.linear(leaves_b["x_t"], leaves_b["w_t"], leaves_b["b_t"])
        assert s.dtype == torch.bfloat16
    # the loss itself outside autocast: under CPU autocast distillation_loss's torch path reduces the KL in
    # bf16 (2e-4 off); the fused-linear loss switches autocast off around its loss
    ref = distilx.distillation_loss(s, t, c["labels"], c["mask"])
    keys = ("x_s", "w_s", "b_s")
    grads = torch.autograd.grad(out.loss, [leaves_a[k] for k in keys])
    ref_grads = torch.autograd.grad(ref.loss, [leaves_b[k] for k in keys])
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-5)
    for key, a, r in zip(keys, grads, ref_grads):
        assert a.dtype == torch.float32, key
        # both round the same chunk gradient to bf16; the weight gradient is summed in fp32 here and in
        # bf16-input matmuls there: within a few bf16 ulps of the largest entry
        torch.testing.assert_close(a, r, rtol=2**-6, atol=2**-7 * r.abs().max().item())


# ---------------------------------------------------------------- Triton kernels (interpreter on CPU)
pytest_triton = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy sees -inf lanes


@pytest_triton
@pytest.mark.parametrize("kl_on", ["tokens", "targets"])
def test_triton_path_matches_torch_path_and_explicit_logits(kl_on):
    c = _case(n_seq=2, seq_len=4, hidden_s=8, hidden_t=10, vocab=1021, seed=12)  # a partial last block
    triton_result = _fused(c, kl_on=kl_on, chunk_size=3, backend="triton")
    _assert_same(triton_result, _fused(c, kl_on=kl_on, chunk_size=3, backend="torch"))
    _assert_same(triton_result, _explicit(c, kl_on=kl_on))


@pytest_triton
def test_triton_path_half_precision():
    c = _case(n_seq=2, seq_len=3, hidden_s=8, hidden_t=8, vocab=1021, seed=13)
    half = {k: (v.to(torch.float16) if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in c.items()}
    (out_a, grads_a), (out_b, grads_b) = _fused(half, chunk_size=2, backend="triton"), _fused(half, chunk_size=2, backend="torch")
    for a, b in zip(out_a, out_b):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-4)
    for a, b in zip(grads_a, grads_b):
        assert a.dtype == torch.float16
        # the chunk gradient is rounded to fp16 by both paths (up to an ulp apart, see test_kernel_distill_logits)
        torch.testing.assert_close(a.float(), b.float(), rtol=2**-8, atol=2**-9 * b.abs().max().item())


# ---------------------------------------------------------------- module form, bad input
def test_module_form_matches_function():
    c = _case(seed=14)
    module = distilx.FusedLinearDistillationLoss(temperature=3.0, alpha_kl=1.5, kl_on="targets", chunk_size=5)
    assert "chunk_size=5" in repr(module)
    out = module(c["x_s"], c["w_s"], c["x_t"], c["w_t"], c["labels"], student_bias=c["b_s"], teacher_bias=c["b_t"],
                 student_hidden=c["h_s"], teacher_hidden=c["h_t"], attention_mask=c["mask"])
    ref = _fused(c, temperature=3.0, alpha_kl=1.5, kl_on="targets", chunk_size=5)[0]
    for a, r in zip(out, ref):
        torch.testing.assert_close(a, r.detach())


def _ok():
    c = _case(seed=15)
    return [c["x_s"], c["w_s"], c["x_t"], c["w_t"], c["labels"]], dict(
        student_bias=c["b_s"], teacher_bias=c["b_t"], student_hidden=c["h_s"], teacher_hidden=c["h_t"],
        attention_mask=c["mask"],
    )


@pytest.mark.parametrize(
    "mutate, error, pattern",
    [
        (lambda a, k: a.__setitem__(1, torch.randn(53, 13)), ValueError, r"student_input has H=12 but student_weight"),
        (lambda a, k: a.__setitem__(3, torch.randn(53, 19)), ValueError, r"teacher_input has H=20 but teacher_weight"),
        (lambda a, k: a.__setitem__(3, torch.randn(54, 20)), ValueError, "vocabulary mismatch"),
        (lambda a, k: a.__setitem__(1, torch.randn(53)), ValueError, r"decoder weight \[V, H\]"),
        (lambda a, k: a.__setitem__(2, torch.randn(3, 5, 20)), ValueError, "teacher_input must be"),
        (lambda a, k: a.__setitem__(0, torch.randn(2, 3, 6, 12)), ValueError, r"\[B, L, H\] or \[N, H\]"),
        (lambda a, k: k.__setitem__("student_bias", torch.randn(52)), ValueError, r"student_bias must be \[V\]"),
        (lambda a, k: a.__setitem__(4, torch.zeros(3, 5, dtype=torch.long)), ValueError, "labels shape"),
        (lambda a, k: a.__setitem__(4, a[4].float()), TypeError, "labels must be an integer"),
        (lambda a, k: a.__setitem__(4, torch.full((3, 6), 53)), ValueError, r"\[0, 53\)"),
        (lambda a, k: a.__setitem__(1, a[1].double()), TypeError, "must share one dtype"),
        (lambda a, k: k.__setitem__("teacher_bias", k["teacher_bias"].half()), TypeError, "teacher_bias must share"),
        (lambda a, k: a.__setitem__(0, a[0].long()), TypeError, "floating-point"),
        (lambda a, k: a.__setitem__(3, "weight"), TypeError, "torch.Tensor"),
        (lambda a, k: k.__setitem__("attention_mask", torch.ones(3, 5)), ValueError, "attention_mask shape"),
        (lambda a, k: k.__setitem__("teacher_hidden", None), ValueError, "both student_hidden and teacher_hidden"),
        (lambda a, k: k.__setitem__("teacher_hidden", torch.randn(3, 6, 9)), ValueError, "hidden sizes differ"),
        (lambda a, k: k.__setitem__("chunk_size", 0), ValueError, "chunk_size must be a positive int"),
        (lambda a, k: k.__setitem__("chunk_size", 2.5), ValueError, "chunk_size must be a positive int"),
        (lambda a, k: k.__setitem__("kl_on", "all"), ValueError, "kl_on must be one of"),
        (lambda a, k: a.__setitem__(3, torch.randn(53, 20, device="meta")), ValueError, "one device"),
    ],
)
def test_bad_input_raises(mutate, error, pattern):
    args, kwargs = _ok()
    mutate(args, kwargs)
    with pytest.raises(error, match=pattern):
        distilx.fused_linear_distillation_loss(*args, **kwargs)


def test_bad_options_fail_at_module_construction_and_triton_rejects_float64():
    with pytest.raises(ValueError, match="chunk_size"):
        distilx.FusedLinearDistillationLoss(chunk_size=-1)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distilx.FusedLinearDistillationLoss(temperature=0)
    args, kwargs = _ok()
    args = [a.double() if a.is_floating_point() else a for a in args]
    kwargs = {k: v.double() if v.is_floating_point() else v for k, v in kwargs.items()}
    with pytest.raises(TypeError, match="float32, float16 and bfloat16"):
        distilx.fused_linear_distillation_loss(*args, backend="triton", **kwargs)


def test_validate_false_turns_bad_labels_into_nan():
    args, kwargs = _ok()
    args[4] = args[4].clone()
    args[4][0, 1] = 53
    out = distilx.fused_linear_distillation_loss(*args, validate=False, **kwargs)
    assert torch.isnan(out.mlm)


# ---------------------------------------------------------------- chunk-size and auto rules
def test_chunk_rule_is_bounded_independent_of_n_and_adapts_to_free_memory():
    gib = 1 << 30
    cpu = dict(device="cpu", student_dtype=torch.float32, free_bytes=16 * gib)
    c_small, c_large = fused_linear_chunk_rows(4096, 250002, **cpu), fused_linear_chunk_rows(10**6, 250002, **cpu)
    assert c_small == c_large == 128  # the 256 MiB budget at 8 bytes per logit pair
    assert 2 * c_small * 250002 * 4 <= fused_linear.CHUNK_BUDGET_BYTES["cpu"]
    assert fused_linear_chunk_rows(100, 30522, **cpu) == 100  # everything fits: one chunk
    # little free memory: 1/8 of it
    tight = fused_linear_chunk_rows(4096, 250002, device="cpu", student_dtype=torch.float32, free_bytes=gib // 2)
    assert 0 < tight < c_small and 2 * tight * 250002 * 4 <= gib // 2 // 8
    assert fused_linear_chunk_rows(4096, 250002, device="cpu", student_dtype=torch.float32, free_bytes=1) == 1
    gpu = fused_linear_chunk_rows(16384, 250002, device="cuda", student_dtype=torch.bfloat16, free_bytes=100 * gib)
    assert gpu == 1024 and gpu % 128 == 0
    # mixed dtypes: a bf16 student with an fp32 teacher costs 6 bytes per logit pair
    assert fused_linear_chunk_rows(16384, 250002, device="cuda", student_dtype=torch.bfloat16,
                                   teacher_dtype=torch.float32, free_bytes=100 * gib) == 640


def test_auto_rule():
    gib = 1 << 30
    cpu = dict(device="cpu", dtype=torch.float32, free_bytes=20 * gib)
    # issue 13's case: 12 GB of logits-path tensors on a 20 GB machine
    assert fused_linear_pays(4096, 250002, 384, **cpu)
    # one chunk holds everything: no gain
    assert not fused_linear_pays(512, 30522, 384, **cpu)
    # BERT vocabulary, N = 4096: 1.5 GB of logits tensors (above 1 GiB), fused-linear measured no slower
    assert fused_linear_pays(4096, 30522, 384, **cpu)
    assert not fused_linear_pays(2048, 30522, 384, **cpu)  # 0.75 GB, 1/27 of free memory
    assert fused_linear_pays(2048, 30522, 384, device="cpu", dtype=torch.float32, free_bytes=2 * gib)  # tight
    # a bf16 head so wide that its fp32 weight accumulator outweighs the logits saved
    gpu = dict(device="cuda", dtype=torch.bfloat16, free_bytes=1 * gib)
    assert not fused_linear_pays(1200, 250002, 16384, **gpu)
    assert fused_linear_pays(1200, 250002, 16384, weight_dtype=torch.float32, **gpu)


def test_free_memory_is_the_hosts_available_memory():
    free = free_memory_bytes("cpu")
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < free <= total


# ---------------------------------------------------------------- memory, measured
def _peak_extra(side, n, vocab, hidden=64):
    """Peak RSS above the inputs in a fresh process, via bench/bench_fused_linear.py --one."""
    bench = os.path.join(os.path.dirname(__file__), "..", "bench", "bench_fused_linear.py")
    spec = json.dumps([side, n, hidden, vocab, "fp32", 1, 1])
    proc = subprocess.run([sys.executable, bench, "--one", spec], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["extra_bytes"]


def test_peak_extra_memory_does_not_grow_with_n():
    """Measured: from N = 2048 to 8192 rows the fused-linear peak stays at its two chunk buffers (plus the
    chunked loss's temporaries, <= 15% of one buffer), while the logits path's three N x V tensors grow 4x."""
    vocab, hidden = 30522, 64
    grad_w = (vocab * hidden + vocab) * 4  # handed back to the caller on every path
    small = _peak_extra("fused-linear", 2048, vocab, hidden) - grad_w
    large = _peak_extra("fused-linear", 8192, vocab, hidden) - grad_w
    chunk = fused_linear_chunk_rows(8192, vocab, device="cpu", student_dtype=torch.float32)
    buffers = 2 * chunk * vocab * 4
    assert large <= 1.2 * small + (16 << 20), f"{small / 2**20:.0f} MiB at N=2048 vs {large / 2**20:.0f} MiB at N=8192"
    assert 0.9 * buffers <= large <= 1.25 * buffers + (16 << 20), (
        f"{large / 2**20:.0f} MiB vs two {chunk}-row chunk buffers of {buffers / 2**21:.0f} MiB each"
    )


# ---------------------------------------------------------------- GPU-oriented code paths, run on the CPU
def test_chunk_buffers_have_aligned_rows_and_give_the_same_numbers(monkeypatch):
    """The chunk buffers are [C, V] views of rows padded to 64 columns (every row 16-byte aligned); the
    values are those of an unpadded computation (the explicit logits path)."""
    made = []
    real = fused_linear._padded_buffer

    def spy(rows, vocab, dtype, device):
        buf = real(rows, vocab, dtype, device)
        made.append(buf)
        return buf

    monkeypatch.setattr(fused_linear, "_padded_buffer", spy)
    case = _case(n_seq=3, seq_len=5, vocab=1021, seed=31)
    fused = _fused(case, chunk_size=4)
    assert len(made) == 2
    for buf in made:
        assert buf.shape[1] == 1021 and buf.stride(0) == 1024 and buf.data_ptr() % 16 == 0
    _assert_same(fused, _explicit(case))


def test_weight_gradient_partials_path_accumulates_in_fp32_without_new_buffers():
    """The "partials" path (CUDA where addmm cannot accumulate bf16 products into fp32): each chunk's product in
    bf16 (fp32 inside the GEMM, rounded once) into one reused buffer, summed in fp32: within one bf16 rounding
    of each partial of the float64 sum, and never allocating per chunk."""
    gen = torch.Generator().manual_seed(0)
    vocab, hidden, chunks = 257, 24, 6
    acc = torch.zeros(vocab, hidden)
    scratch: dict = {}
    exact = torch.zeros(vocab, hidden, dtype=torch.float64)
    bound = torch.zeros(vocab, hidden, dtype=torch.float64)
    pointers = set()
    for _ in range(chunks):
        g = torch.randn(vocab, 32, generator=gen).to(torch.bfloat16)
        x = torch.randn(32, hidden, generator=gen).to(torch.bfloat16)
        fused_linear._accumulate_mm(acc, g, x, "partials", scratch)
        pointers.add(scratch["partial"].data_ptr())
        part = g.double() @ x.double()
        exact += part
        bound += part.abs() * 2**-8 + 1e-6
    assert len(pointers) == 1 and scratch["partial"].dtype == torch.bfloat16
    assert torch.all((acc.double() - exact).abs() <= bound)
    # and the path choice: factors in the accumulator's dtype add directly; bf16 on the CPU upcasts
    assert fused_linear.weight_grad_path(acc, torch.float32) == "same-dtype"
    assert fused_linear.weight_grad_path(acc, torch.bfloat16) == "upcast"
