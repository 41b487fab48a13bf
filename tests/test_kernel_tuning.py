"""How the logits kernel's configuration is chosen (python/distilx/triton_kernels/tuning.py): names, the
committed table, the lookup rule, and the run-time tuning of an unknown device (a fake device name, tiny
shapes, the interpreter) with its cache."""

from __future__ import annotations

import json

import pytest
import torch

from distilx.triton_kernels import tuning
from distilx.triton_kernels.tuning import KernelConfig

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """No memo, no override, a private cache dir, and the interpreter's device named as the test says."""
    tuning.forget()
    monkeypatch.delenv("DISTILX_LOSS_KERNEL", raising=False)
    monkeypatch.delenv("DISTILX_AUTOTUNE", raising=False)
    monkeypatch.setenv("DISTILX_CACHE", str(tmp_path / "cache"))
    yield
    tuning.forget()


def test_names_round_trip_and_bad_names_are_refused():
    for config in tuning.all_candidates():
        assert KernelConfig.parse(config.name) == config
    for bad in ("stream-b4096", "split-b4096-g8-w8-s1", "stream-b3000-g8-w8-s1", "fast-b4096-w8", "stream-b256-g512-w2"):
        with pytest.raises(ValueError, match="configuration"):
            KernelConfig.parse(bad)


def test_committed_table_parses():
    data = json.loads(tuning.TABLE_PATH.read_text())
    assert data["format"] == 1 and isinstance(data["devices"], dict)
    for key, device in data["devices"].items():
        assert "|sm_" in key
        for entry in device["entries"]:
            KernelConfig(**entry["config"]).check()
            assert entry["dtypes"].count("/") == 1 and isinstance(entry["write_grad"], bool)


def _entry(vocab, name, dtypes="bf16/bf16", write_grad=True):
    config = KernelConfig.parse(name)
    return {"vocab": vocab, "dtypes": dtypes, "write_grad": write_grad, "config": config.__dict__}


def test_lookup_takes_the_exact_then_the_nearest_vocabulary_within_2x():
    entries = [_entry(30522, "stream-b4096-g8-w8-s1"), _entry(250002, "split-c16384-b4096-g8-w8-s1"),
               _entry(591, "stream-b1024-g8-w4-s1"), _entry(30522, "stream-b2048-g8-w4-s1", write_grad=False)]
    assert tuning.lookup(entries, 30522, "bf16/bf16", True).name == "stream-b4096-g8-w8-s1"
    assert tuning.lookup(entries, 30522, "bf16/bf16", False).name == "stream-b2048-g8-w4-s1"
    assert tuning.lookup(entries, 50368, "bf16/bf16", True).name == "stream-b4096-g8-w8-s1"  # 1.65x away
    assert tuning.lookup(entries, 128256, "bf16/bf16", True).name == "split-c16384-b4096-g8-w8-s1"  # 1.95x
    assert tuning.lookup(entries, 80000, "bf16/bf16", True) is None  # 2.6x from 30522, 3.1x from 250002
    assert tuning.lookup(entries, 1000, "bf16/bf16", True).name == "stream-b1024-g8-w4-s1"
    assert tuning.lookup(entries, 2100, "bf16/bf16", True) is None  # small and large vocabularies never mix
    assert tuning.lookup(entries, 30522, "fp32/fp32", True) is None
    # no gradient-free entry at 250002: the training entry serves
    assert tuning.lookup(entries, 250002, "bf16/bf16", False).name == "split-c16384-b4096-g8-w8-s1"


def test_a_known_device_takes_the_table(monkeypatch, tmp_path):
    table = tmp_path / "tuned.json"
    table.write_text(json.dumps({"format": 1, "devices": {"Fake GPU|sm_99": {"entries": [
        _entry(1021, "stream-b256-g8-w2-s1", dtypes="fp32/fp32")]}}}))
    monkeypatch.setattr(tuning, "TABLE_PATH", table)
    monkeypatch.setattr(tuning, "device_key", lambda device: "Fake GPU|sm_99")
    monkeypatch.setattr(tuning, "autotune", lambda *a, **k: pytest.fail("a table entry must not be re-tuned"))
    monkeypatch.setenv("DISTILX_AUTOTUNE", "force")
    config, source = tuning.config_with_source(CPU, 1021, torch.float32, torch.float32, True)
    assert (config.name, source) == ("stream-b256-g8-w2-s1", "table")
    # another slot of that device is not in the table, and tuning is off: the first kernel's default
    monkeypatch.setenv("DISTILX_AUTOTUNE", "0")
    assert tuning.config_with_source(CPU, 50000, torch.float32, torch.float32, True) == (
        tuning.default_config(50000), "default")


def test_an_unknown_device_tunes_once_then_reads_its_cache(monkeypatch):
    monkeypatch.setattr(tuning, "device_key", lambda device: "Unknown GPU|sm_98")
    tiny = [KernelConfig("stream", 256, 2), KernelConfig("split", 256, 2, chunk_v=512), KernelConfig("stream", 512, 4)]
    monkeypatch.setattr(tuning, "candidates", lambda vocab, full=False: [tuning.default_config(vocab)] + tiny)
    monkeypatch.setattr(tuning, "tune_rows", lambda vocab, element_bytes, device: 3)
    monkeypatch.setattr(tuning, "TUNE_REPS", 1)
    monkeypatch.setattr(tuning, "TUNE_WARMUP", 0)
    # without the force switch the interpreter never tunes (it would take minutes at real sizes)
    assert tuning.config_with_source(CPU, 1283, torch.bfloat16, torch.bfloat16, True)[1] == "default"
    monkeypatch.setenv("DISTILX_AUTOTUNE", "force")
    config, source = tuning.config_with_source(CPU, 1283, torch.bfloat16, torch.bfloat16, True)
    assert source == "autotuned"
    cache = json.loads(tuning.cache_path("Unknown GPU|sm_98").read_text())
    (entry,) = cache["entries"]
    assert entry["vocab"] == 1283 and entry["dtypes"] == "bf16/bf16" and entry["write_grad"] is True
    assert [r["name"] for r in entry["tried"]] == [c.name for c in tuning.candidates(1283)]
    assert all("seconds" in r for r in entry["tried"]), entry["tried"]  # every candidate matched the first kernel
    best = min(entry["tried"], key=lambda r: r["seconds"])
    assert config == KernelConfig(**best["config"])
    # a new process (no memo) reads the cache and tunes nothing
    tuning.forget()
    monkeypatch.setattr(tuning, "autotune", lambda *a, **k: pytest.fail("the cache must be read, not re-tuned"))
    assert tuning.config_with_source(CPU, 1283, torch.bfloat16, torch.bfloat16, True) == (config, "cache")


def test_a_candidate_with_wrong_outputs_or_a_failure_is_never_chosen(monkeypatch):
    wrong, broken = KernelConfig("stream", 256, 2), KernelConfig("stream", 512, 4)
    real_run = tuning.run_config

    def run(config, case, write_grad, temperature=2.0, grad=None):
        if config == broken:
            raise RuntimeError("does not compile here")
        out = real_run(config, case, write_grad, temperature, grad)
        if config == wrong:
            out[0][0] += 1.0  # one row's KL off
        return out

    monkeypatch.setattr(tuning, "run_config", run)
    monkeypatch.setattr(tuning, "TUNE_WARMUP", 0)
    entry = tuning.autotune(CPU, 1021, torch.float32, torch.float32, True, rows=3, reps=1,
                            configs=[wrong, broken, KernelConfig("stream", 1024, 4)], key="Fake|sm_97")
    tried = {r["name"]: r for r in entry["tried"]}
    assert tried[wrong.name]["error"] == "outputs differ from the first kernel's"
    assert "does not compile here" in tried[broken.name]["error"]
    assert KernelConfig(**entry["config"]).name == "stream-b1024-g8-w4-s1"


def test_override_names_the_configuration(monkeypatch):
    monkeypatch.setenv("DISTILX_LOSS_KERNEL", "split-c512-b256-g8-w2-s1")
    assert tuning.config_with_source(CPU, 30522, torch.bfloat16, torch.bfloat16, True) == (
        KernelConfig("split", 256, 2, chunk_v=512), "override")
    monkeypatch.setenv("DISTILX_LOSS_KERNEL", "turbo")
    with pytest.raises(ValueError, match="turbo"):
        tuning.config_with_source(CPU, 30522, torch.bfloat16, torch.bfloat16, True)
