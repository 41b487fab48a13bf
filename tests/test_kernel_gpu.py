"""GPU-only checks of the fused loss (decided at run time; run with `pytest -m gpu` on a CUDA machine).

bf16/fp16 logits, vocabularies of 128256 and 262144 (int64 offsets: N*V > 2^31), CUDA-graph
capture and replay, and the memory bound (extra memory = the student gradient), each against the
PyTorch path on the same device. Tolerances: values rtol 1e-4 / atol 1e-4 (fp32 sums over up to 16k
rows in a different order); bf16 gradients rtol 2^-6 / atol 1e-6; fp16 rtol 2^-9 / atol 1e-6.

Every test runs for each kernel (the `kernel` fixture, forced with DISTILX_LOSS_KERNEL): the first kernel
("rowwise", the default where nothing is tuned), the streaming one and the split one
(python/distilx/triton_kernels/distill_logits_stream.py); the last test tunes one slot of this device into a
private cache.
"""

from __future__ import annotations

import pytest
import torch

import distilx
from conftest import has_cuda
from distilx.losses.chunked import chunked_logits_loss
from distilx.triton_kernels.distill_logits import fused_logits_loss

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif("not has_cuda()", reason="needs a CUDA device (run on a lent GPU with `pytest -m gpu`)"),
]

KERNELS = {"rowwise": "rowwise-b4096-w8", "stream": "stream-b4096-g8-w8-s1", "split": "split-c16384-b4096-g8-w8-s1"}


@pytest.fixture(autouse=True, params=sorted(KERNELS))
def kernel(request, monkeypatch):
    monkeypatch.setenv("DISTILX_LOSS_KERNEL", KERNELS[request.param])
    return request.param


GRAD_TOL = {torch.bfloat16: dict(rtol=2**-6, atol=1e-6), torch.float16: dict(rtol=2**-9, atol=1e-6),
            torch.float32: dict(rtol=1e-4, atol=1e-7)}


def _batch(n, vocab, dtype, seed=0, hidden=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    s = (torch.randn(n, vocab, device="cuda", generator=gen) * 3).to(dtype)
    # a teacher close to the student (as after some training) plus peaked rows: the hard case for bf16
    t = (s.float() + torch.randn(n, vocab, device="cuda", generator=gen)).to(dtype)
    t[::7, 11] = 60.0
    labels = torch.randint(0, vocab, (n,), device="cuda", generator=gen)
    labels[torch.rand(n, device="cuda", generator=gen) < 0.85] = -100
    mask = torch.ones(n, dtype=torch.long, device="cuda")
    mask[-n // 8:] = 0
    labels[mask == 0] = -100
    extra = ()
    if hidden:
        extra = (torch.randn(n, hidden, device="cuda", generator=gen).to(dtype),
                 torch.randn(n, hidden, device="cuda", generator=gen).to(dtype))
    return s, t, labels, mask, extra


def _run(backend, s, t, labels, mask, extra=(), grad_out=1.0, **opts):
    s = s.detach().clone().requires_grad_(True)
    hidden = ()
    if extra:
        hidden = (extra[0].detach().clone().requires_grad_(True), extra[1])
    out = distilx.distillation_loss(s, t, labels, mask, *hidden, backend=backend, **opts)
    (out.loss * grad_out).backward()
    return out, s.grad, (hidden[0].grad if hidden else None)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("kl_on", ["tokens", "targets"])
def test_dtypes_at_bert_vocabulary(dtype, kl_on):
    s, t, labels, mask, extra = _batch(2048, 30522, dtype, hidden=768)
    a, ga, ha = _run("triton", s, t, labels, mask, extra, grad_out=0.37, kl_on=kl_on)
    b, gb, hb = _run("torch", s, t, labels, mask, extra, grad_out=0.37, kl_on=kl_on)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.float(), y.float(), rtol=1e-4, atol=1e-4)
    assert ga.dtype == dtype
    torch.testing.assert_close(ga.float(), gb.float(), **GRAD_TOL[dtype])
    torch.testing.assert_close(ha.float(), hb.float(), **GRAD_TOL[dtype])


def test_bf16_gradient_is_fp32_gradient_rounded_once():
    """The KL gradient (p_s - p_t) is formed in fp32: compare with the fp32 path on the same bf16 inputs."""
    s, t, labels, mask, _ = _batch(1024, 30522, torch.bfloat16, seed=3)
    _, g16, _ = _run("triton", s, t, labels, mask)
    _, g32, _ = _run("torch", s.float(), t.float(), labels, mask)
    # round-to-nearest-even to bf16 is within half an ulp = 2^-8 relative; + fp32 noise (1e-5 rel, 1e-8 abs
    # where p_s - p_t cancels). (The CPU interpreter truncates instead, so this only holds on a GPU.)
    torch.testing.assert_close(g16.float(), g32, rtol=2**-8 + 1e-5, atol=1e-8)


@pytest.mark.parametrize("vocab", [128256, 262144])
def test_large_vocabularies(vocab):
    s, t, labels, mask, _ = _batch(256, vocab, torch.bfloat16, seed=vocab)
    a, ga, _ = _run("triton", s, t, labels, mask, grad_out=2.0)
    b, gb, _ = _run("torch", s, t, labels, mask, grad_out=2.0)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ga.float(), gb.float(), **GRAD_TOL[torch.bfloat16])


def test_int64_offsets_past_two_to_the_31():
    """N*V > 2^31 elements: the last rows must be read and written at the right place."""
    n, vocab = 8200, 262144  # 2.15e9 elements
    gen = torch.Generator(device="cuda").manual_seed(1)
    s = torch.randn(n, vocab, device="cuda", dtype=torch.bfloat16, generator=gen)
    t = torch.randn(n, vocab, device="cuda", dtype=torch.bfloat16, generator=gen)
    labels = torch.randint(0, vocab, (n,), device="cuda", generator=gen)
    kl_mask = torch.ones(n, dtype=torch.bool, device="cuda")
    scales = torch.tensor([0.5, 0.25], dtype=torch.float64, device="cuda")
    kl, ce, grad = fused_logits_loss(s, t, labels, kl_mask, scales, 2.0, True, True, True)
    tail = slice(n - 16, n)
    kl_r, ce_r, grad_r = chunked_logits_loss(s[tail], t[tail], labels[tail], kl_mask[tail], scales, 2.0, True, True, True)
    torch.testing.assert_close(kl[tail], kl_r.float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ce[tail], ce_r.float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad[tail].float(), grad_r.float(), **GRAD_TOL[torch.bfloat16])


def test_cuda_graph_capture_and_replay():
    n, vocab, hidden = 1024, 30522, 768
    s0, t0, labels0, mask0, (hs0, ht0) = _batch(n, vocab, torch.bfloat16, seed=5, hidden=hidden)
    s = s0.clone().requires_grad_(True)
    hs = hs0.clone().requires_grad_(True)
    t, labels, mask, ht = t0.clone(), labels0.clone(), mask0.clone(), ht0.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up compiles the kernels outside the capture
        for _ in range(2):
            s.grad = hs.grad = None
            distilx.distillation_loss(s, t, labels, mask, hs, ht).loss.backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    s.grad = hs.grad = None
    with torch.cuda.graph(graph):
        out = distilx.distillation_loss(s, t, labels, mask, hs, ht)
        out.loss.backward()
    # new data into the static inputs, replay, compare with an eager call on the same data
    s1, t1, labels1, mask1, (hs1, ht1) = _batch(n, vocab, torch.bfloat16, seed=6, hidden=hidden)
    with torch.no_grad():
        s.copy_(s1), t.copy_(t1), labels.copy_(labels1), mask.copy_(mask1), hs.copy_(hs1), ht.copy_(ht1)
    graph.replay()
    torch.cuda.synchronize()
    ref, g_ref, h_ref = _run("triton", s1, t1, labels1, mask1, (hs1, ht1))
    for x, y in zip(out, ref):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s.grad.float(), g_ref.float(), rtol=0, atol=0)
    torch.testing.assert_close(hs.grad.float(), h_ref.float(), rtol=0, atol=0)


def test_extra_memory_is_the_student_gradient():
    n, vocab = 8192, 30522
    s, t, labels, mask, _ = _batch(n, vocab, torch.bfloat16, seed=9)
    s.requires_grad_(True)
    distilx.distillation_loss(s[:8], t[:8], labels[:8], mask[:8]).loss.backward()  # compile outside the measure
    s.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    distilx.distillation_loss(s, t, labels, mask).loss.backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    grad_bytes = s.numel() * s.element_size()
    assert extra <= grad_bytes * 1.02 + (4 << 20), f"extra {extra / 2**20:.1f} MiB vs gradient {grad_bytes / 2**20:.1f} MiB"


def test_in_place_gradient_over_the_student():
    """The fused-linear loss passes its student chunk as the gradient buffer (split then runs one program per row)."""
    s, t, labels, _, _ = _batch(2048, 30522, torch.bfloat16, seed=11)
    kl_mask = torch.ones(2048, dtype=torch.bool, device="cuda")
    scales = torch.tensor([0.5, 0.25], dtype=torch.float64, device="cuda")
    expected = chunked_logits_loss(s.clone(), t, labels, kl_mask, scales, 2.0, True, True, True)
    buffer = s.clone()
    got = fused_logits_loss(buffer, t, labels, kl_mask, scales, 2.0, True, True, True, grad_buffer=buffer)
    torch.testing.assert_close(got[0], expected[0].float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[2].float(), expected[2].float(), **GRAD_TOL[torch.bfloat16])


def test_run_time_tuning_of_this_device(kernel, monkeypatch, tmp_path):
    """An unknown device (this one, with the committed table hidden) tunes one slot, caches it, and the
    result matches the PyTorch path."""
    if kernel != "rowwise":
        pytest.skip("tuning is tested once")
    from distilx.triton_kernels import tuning

    monkeypatch.delenv("DISTILX_LOSS_KERNEL")
    monkeypatch.setattr(tuning, "TABLE_PATH", tmp_path / "no-table.json")
    monkeypatch.setenv("DISTILX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DISTILX_AUTOTUNE", "auto")
    monkeypatch.setattr(tuning, "TUNE_BYTES", 256 << 20)
    # the first kernel and two configurations this module already compiled: the tuning, not the compiler, is tested
    monkeypatch.setattr(tuning, "candidates", lambda vocab, full=False: [tuning.default_config(vocab)] + [
        tuning.KernelConfig.parse(KERNELS["stream"]), tuning.KernelConfig.parse(KERNELS["split"])])
    tuning.forget()
    try:
        s, t, labels, mask, _ = _batch(1024, 50368, torch.bfloat16, seed=13)
        config, source = tuning.config_with_source(s.device, 50368, torch.bfloat16, torch.bfloat16, True)
        assert source == "autotuned"
        entry = next(e for e in tuning.cached_entries(tuning.device_key(s.device)) if e["vocab"] == 50368)
        assert [r for r in entry["tried"] if "seconds" in r], entry["tried"]
        a, ga, _ = _run("triton", s, t, labels, mask)
        b, gb, _ = _run("torch", s, t, labels, mask)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ga.float(), gb.float(), **GRAD_TOL[torch.bfloat16])
    finally:
        tuning.forget()
