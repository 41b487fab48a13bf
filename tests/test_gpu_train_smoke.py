"""bench/gpu_train_smoke.py, the assets-free training check prepared for a GPU machine, run on the CPU:
it must pass there (torch loss backend, fp32), write its rows, and name each kind of failure it guards."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_train_smoke.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_train_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_passes_on_cpu_and_writes_its_rows(tmp_path):
    out = tmp_path / "smoke.json"
    # one torch thread: on a shared 2-core machine two threads wait on each other (10x slower)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PASS" in proc.stdout
    results = json.loads(out.read_text())
    steps = results["steps"]
    assert results["device"] == "cpu" and results["problems"] == []
    assert [(r["path"], r["run"]) for r in results["rows"]] == [
        ("logits", "full"), ("logits", "resumed"), ("fused-linear", "full"), ("fused-linear", "resumed")]
    for row in results["rows"]:
        assert "error" not in row, row
        assert row["steps"] == steps and row["skipped"] == 0
        assert len(row["losses"]) == steps and all(math.isfinite(x) for x in row["losses"])
        assert row["losses"][-1] < row["losses"][0]
        assert row["tokens_per_s"] > 0 and row["peak_gpu_mib"] is None
        if row["run"] == "resumed":
            assert row["resumed_at"] == steps // 2  # from the half-way checkpoint, not started over
    # the resumed runs were compared with the uninterrupted ones: bit-identical on the CPU
    comparisons = results["comparisons"]
    assert len(comparisons) == 5
    resumed = {name: diff for name, diff in comparisons.items() if "resumed vs full" in name}
    assert len(resumed) == 4 and all(diff == 0.0 for diff in resumed.values())
    # the vocabulary was trained on the repository's prose, not taken from an asset package
    assert 1000 < results["vocab_size"] <= 8000


def good_rows(steps=8):
    losses = [10.0 - 0.1 * i for i in range(steps)]
    rows = [dict(path=p, run=r, steps_wanted=steps, steps=steps, skipped=0, losses=list(losses), seconds=1.0,
                 tokens_per_s=1.0, peak_gpu_mib=None)
            for p in ("logits", "fused-linear") for r in ("full", "resumed")]
    for row in rows[1::2]:
        row["resumed_at"] = steps // 2
    return rows


@pytest.mark.parametrize("damage, expected", [
    (lambda rows: rows[1]["losses"].__setitem__(3, float("nan")), "logits resumed: non-finite loss"),
    (lambda rows: rows[2].update(losses=[10.0 + 0.1 * i for i in range(8)]),
     "fused-linear full: loss did not decrease"),
    (lambda rows: rows[0].update(skipped=2), "logits full: 2 steps skipped"),
    (lambda rows: rows[3].update(steps=4, losses=rows[3]["losses"][:4]), "fused-linear resumed: 4 steps"),
    (lambda rows: (rows[0].clear(), rows[0].update(path="logits", run="full", error="RuntimeError: boom",
                                                   seconds=0.1)), "logits full: RuntimeError: boom"),
    (lambda rows: rows[1]["losses"].__setitem__(6, 9.0), "resumed vs full, steps 5-8: max |diff|"),
    (lambda rows: rows[3].update(resumed_at=0), "fused-linear resumed: continued from step 0, not from"),
])
def test_each_failure_is_named(damage, expected):
    smoke = load_script()
    rows = good_rows()
    assert smoke.failures(rows, smoke.compare(rows, 8), "cpu") == []
    damage(rows)
    problems = smoke.failures(rows, smoke.compare(rows, 8), "cpu")
    assert any(expected in p for p in problems), problems


def test_gpu_resume_differences_are_reported_not_failed():
    smoke = load_script()
    rows = good_rows()
    rows[1]["losses"][6] += 1e-3
    comparisons = smoke.compare(rows, 8)
    assert comparisons["logits: resumed vs full, steps 5-8"] == pytest.approx(1e-3)
    assert smoke.failures(rows, comparisons, "cuda") == []
