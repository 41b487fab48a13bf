"""bench/gpu_train.py, the end-to-end GPU training benchmark, checked on the CPU so it cannot rot between GPU
loans: its baselines compute distilx's loss, its batch search finds the largest batch and survives
out-of-memory errors, DistilBERT's masking is what it says, and the whole script runs at toy sizes."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import distilx

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import gpu_baselines  # noqa: E402
import gpu_train  # noqa: E402
from distilx.losses.reference import reference_distillation_loss  # noqa: E402

OPTIONS = dict(temperature=2.0, alpha_kl=5.0, alpha_mlm=2.0, alpha_cos=1.0)


def _outputs(seed, batch=3, seq=7, vocab=53, hidden=16):
    gen = torch.Generator().manual_seed(seed)
    s = (torch.randn(batch, seq, vocab, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    t = torch.randn(batch, seq, vocab, generator=gen, dtype=torch.float64) * 3
    hs = torch.randn(batch, seq, hidden, generator=gen, dtype=torch.float64).requires_grad_(True)
    ht = torch.randn(batch, seq, hidden, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, vocab, (batch, seq), generator=gen)
    labels[torch.rand(batch, seq, generator=gen) < 0.7] = -100
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 4:] = 0  # padding: the baselines must skip it as distilx does
    labels[mask == 0] = -100
    return s, t, labels, mask, hs, ht


@pytest.mark.parametrize("side", ["trainer-eager-kd", "research-loop"])
@pytest.mark.parametrize("seed", [0, 1])
def test_baseline_losses_are_distilx_loss(side, seed):
    """Each baseline's loss formula equals distilx.distillation_loss (kl_on="tokens") in value and gradients."""
    s, t, labels, mask, hs, ht = _outputs(seed)
    ours = distilx.distillation_loss(s, t, labels, mask, hs, ht, backend="torch", **OPTIONS).loss
    if side == "trainer-eager-kd":
        theirs = gpu_baselines.tutorial_kd_loss(s, t, labels, mask, hs, ht, **OPTIONS)
    else:
        theirs = reference_distillation_loss(s, t, labels, mask, hs, ht, **OPTIONS)[0]
    torch.testing.assert_close(theirs, ours, rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (s, hs))
    g_theirs = torch.autograd.grad(theirs, (s, hs))
    for a, b in zip(g_theirs, g_ours):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert ours.item() > 0


def test_research_masking_is_distilbert_prepare_batch_mlm():
    torch.manual_seed(0)
    vocab, mask_id, specials = 200, 4, [0, 1, 2, 3, 4]
    counts = torch.randint(1, 1000, (vocab,))
    probs = gpu_baselines.token_probabilities(counts, specials)
    assert torch.all(probs[specials] == 0)
    torch.testing.assert_close(probs[10], torch.tensor(float(counts[10]) ** -0.7))
    ids = torch.randint(5, vocab, (64, 32))
    ids[:, 0] = 2  # [CLS] is never a target
    masked, labels = gpu_baselines.research_mlm_batch(ids, probs, mlm_probability=0.15, mask_id=mask_id, vocab=vocab)
    target = labels != -100
    assert target.sum() == math.ceil(0.15 * ids.numel())
    assert not target[:, 0].any()
    assert torch.equal(labels[target], ids[target]) and torch.equal(masked[~target], ids[~target])
    share_mask = (masked[target] == mask_id).float().mean().item()
    share_kept = (masked[target] == ids[target]).float().mean().item()
    assert 0.74 < share_mask < 0.86 and 0.06 < share_kept < 0.16


class FakeGpu:
    """A side whose peak memory is fixed + per_row * batch (+ a bump), out of memory above `limit`."""

    def __init__(self, fixed, per_row, limit, bump=lambda b: 0):
        self.fixed, self.per_row, self.limit, self.bump = fixed, per_row, limit, bump
        self.calls = []

    def __call__(self, batch, warmup, steps):
        self.calls.append((batch, warmup, steps))
        peak = self.fixed + self.per_row * batch + self.bump(batch)
        if peak > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"peak_memory_bytes": peak, "tokens_per_s": 1000.0 * batch}


def test_batch_search_predicts_the_largest_batch_and_times_it():
    gpu = FakeGpu(fixed=10_000, per_row=100, limit=80_000)
    freed = []
    fit = gpu_train.fit_and_time(gpu, start=16, cap=10**6, budget=72_000, warmup=2, steps=4, log=lambda m: None,
                                 on_oom=lambda: freed.append(1))
    # calibration at 16 and 32 (one warm-up + one step each), then the prediction (72000 - 10000) / 100 = 620
    assert gpu.calls[:2] == [(16, 1, 1), (32, 1, 1)]
    assert fit.calibration == [[16, 11_600], [32, 13_200]]
    assert fit.predicted == 616 and fit.batch == 616 and not fit.capped and not freed
    assert gpu.calls[-1] == (616, 2, 4) and fit.timed["peak_memory_bytes"] <= 72_000


def test_batch_search_shrinks_after_out_of_memory_and_halves_the_start():
    # memory grows faster than the calibration says above 300 rows: the prediction does not fit
    gpu = FakeGpu(fixed=0, per_row=100, limit=50_000, bump=lambda b: 40 * max(0, b - 300) ** 1.5)
    freed = []
    fit = gpu_train.fit_and_time(gpu, start=1024, cap=10**6, budget=45_000, warmup=1, steps=1, log=lambda m: None,
                                 on_oom=lambda: freed.append(1))
    assert fit.attempts[:3] == [[1024, "oom"], [512, "oom"], [256, "ok"]]  # the start halved until it fitted
    assert fit.calibration == [[256, 25_600]] and fit.attempts[3] == [512, "oom"]
    assert fit.predicted == 448  # through the origin from the one point, under the budget
    # 448 and 0.85 x 448 -> 376 do not fit (the calibration missed the bump), 0.85 x 376 -> 312 does
    assert fit.attempts[4:] == [[448, "oom"], [376, "oom"], [312, "ok"]]
    assert fit.batch == 312 and gpu.calls[-1] == (312, 1, 1) and not fit.capped
    assert len(freed) == sum(1 for _, status in fit.attempts if status == "oom") >= 2


def test_prediction_from_two_points_or_through_the_origin():
    assert gpu_train.predict_batch([(16, 11_600), (32, 13_200)], 72_000, 10**6) == 616
    assert gpu_train.predict_batch([(16, 1600)], 72_000, 10**6) == 720
    # a second point that is not higher (allocator noise) gives no slope: the larger point, through the origin
    assert gpu_train.predict_batch([(16, 1700), (32, 1600)], 72_000, 10**6) == 1440
    assert gpu_train.predict_batch([(16, 11_600), (32, 13_200)], 72_000, 64) == 64


def test_batch_search_caps_and_reports_it():
    gpu = FakeGpu(fixed=0, per_row=1, limit=10**9)
    fit = gpu_train.fit_and_time(gpu, start=8, cap=64, budget=10**8, warmup=1, steps=1, log=lambda m: None)
    assert fit.batch == 64 and fit.capped and fit.predicted > 64


def test_batch_search_reports_other_errors():
    def broken(batch, warmup, steps):
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError, match="not a memory problem"):
        gpu_train.fit_and_time(broken, start=8, cap=64, budget=100, warmup=1, steps=1, log=lambda m: None)


def test_script_runs_every_side_and_model_on_cpu(tmp_path):
    out = tmp_path / "gpu_train.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_train.py"), "--device", "cpu", "--tiny", "--seq-lens",
                           "32", "--batch-size", "2", "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = json.loads(out.read_text())
    assert [(r["model"], r["side"]) for r in records] == [
        (m, s) for m in gpu_train.MODELS for s in ("distilx", "trainer-eager-kd", "research-loop")]
    for r in records:
        assert "error" not in r, r
        assert r["seq_len"] == 32 and r["batch_size"] == 2 and r["device"] == "cpu"
        assert r["tokens_per_s"] > 0 and math.isfinite(r["loss_last"]) and r["peak_memory_bytes"] is None
        assert r["data_path"] and r["torch"] == torch.__version__
        assert ("data_wait_share" in r) == (r["side"] == "distilx")
    # the same loss on the same kind of batch: every side starts near the same value (random masks differ)
    first = {r["model"]: [] for r in records}
    for r in records:
        first[r["model"]].append(r["loss_last"])
    for losses in first.values():
        assert max(losses) < 1.5 * min(losses), losses
    assert "distilx / trainer-eager-kd" in proc.stdout
