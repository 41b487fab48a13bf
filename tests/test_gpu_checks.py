"""bench/gpu_checks.sh and its summary (bench/gpu_summary.py) without a GPU: every GPU step says it skipped,
the run still ends with the one table and a bundle the device tool can bring back, and the table reads the
JSON every benchmark writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import gpu_summary  # noqa: E402

STEPS = ["1 pytest -m gpu tests/test_kernel_gpu.py", "2 tune_loss_kernels.py", "3 gpu_train.py", "4 bench_loss.py",
         "5 pytest -m gpu tests/test_fused_linear_gpu.py", "6 bench_fused_linear.py", "7 gpu_train_smoke.py",
         "8 bench_relation.py", "9 pytest -m gpu tests/test_relation_loss_gpu.py", "10 pytest -m gpu (rest of the suite)"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU behaviour")
def test_without_cuda_every_gpu_step_skips_and_the_table_comes_last(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run(["bash", str(BENCH / "gpu_checks.sh")], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bundle = json.loads((tmp_path / "gpu_results.json").read_text())
    assert [s["step"] for s in bundle["steps"]] == STEPS
    for s in bundle["steps"]:
        assert s["status"].startswith("skipped:"), s
    assert any("no CUDA device" in s["status"] for s in bundle["steps"])
    out = proc.stdout.rstrip().splitlines()
    table_start = out.index("| step | status | s | result |")
    assert len(out) - table_start == 2 + len(STEPS)  # the table is the last thing printed
    assert "SKIP (no CUDA device)" in (tmp_path / "gpu_results.txt").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_results.json", "gpu_results.txt"]


def test_unknown_part_is_refused(tmp_path):
    proc = subprocess.run(["bash", str(BENCH / "gpu_checks.sh"), "everything"], capture_output=True, text=True,
                          env=dict(os.environ, OUT=str(tmp_path)), timeout=60)
    assert proc.returncode == 2 and "usage" in proc.stderr


def _sample_bundle(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "tune_loss_kernels.json").write_text(json.dumps({
        "device": "NVIDIA H100 80GB HBM3|sm_90", "copy_bytes_per_s": 3.0e12,
        "entries": [{"vocab": 30522, "config": {"kernel": "stream", "block_v": 4096, "group": 8, "num_warps": 8,
                                                "num_stages": 1, "chunk_v": 0},
                     "seconds": 1e-3, "copy_fraction": 0.75, "default_seconds": 4e-3}]}))
    loss = [dict(provider=p, n=16384, vocab=30522, dtype="bf16", seconds=sec, extra_bytes=mem, device="H100",
                 copy_bytes_per_s=3.0e12, bound_bytes=3e9, bound_bytes_per_s=3e9 / sec, kernel="stream-b4096-g8-w8-s1",
                 kernel_source="cache") for p, sec, mem in (("distilx", 1e-3, 1e9), ("eager", 3e-2, 18e9),
                                                            ("liger", 2e-2, 6e9))]
    (run / "bench_loss.json").write_text(json.dumps(loss))
    fused = [dict(side=s, n=16384, hidden=768, vocab=250002, dtype="bf16", seconds=sec, extra_bytes=mem, labelled=lab)
             for s, sec, mem, lab in (("fused-linear", 0.07, 6e8, 0.15), ("logits", 0.13, 2.4e10, 0.15),
                                      ("fused-linear@liger", 0.08, 6e8, 1.0), ("liger-jsd", 0.12, 9e9, 1.0))]
    (run / "bench_fused_linear.json").write_text(json.dumps(fused))
    train = [dict(model="bert-base", seq_len=128, side=side, tokens_per_s=tps, batch_size=b, data_wait_share=w)
             for side, tps, b, w in (("distilx", 9e5, 1024, 0.002), ("trainer-eager-kd", 4e5, 256, None),
                                     ("research-loop", 5e5, 256, None))]
    train.append(dict(model="xlm-r-base", seq_len=512, side="distilx", skipped="time budget"))
    (run / "gpu_train.json").write_text(json.dumps(train))
    (run / "gpu_train_smoke.json").write_text(json.dumps({"problems": []}))
    (run / "half.json").write_text("{\"cut")  # a step killed while writing
    steps = tmp_path / "steps.tsv"
    steps.write_text("".join(f"{name}\tok\t{i}\n" for i, name in enumerate(STEPS)))
    return run, steps


def test_summary_reads_every_benchmark_and_unpacks_for_the_commit(tmp_path):
    run, steps = _sample_bundle(tmp_path)
    data = gpu_summary.bundle(run, tmp_path / "out" / "gpu_results.json", steps)
    assert "unreadable" in data["half.json"]
    table = gpu_summary.table(data)
    assert "V=30522: best stream-b4096-g8-w8-s1 1.00 ms = 75.0% of copy, 4.00x rowwise" in table
    assert "30.00x eager speed, 18.0x less memory" in table and "20.00x liger speed, 6.0x less memory" in table
    assert "fused-linear vs logits N=16384 labelled 15%: 1.86x speed" in table
    assert "fused-linear@liger vs liger-jsd N=16384 labelled 100%: 1.50x speed, extra memory 0.07x" in table
    assert "bert-base@128: distilx 900,000 tok/s (batch 1024, wait 0.2%); 2.25x trainer-eager-kd (batch 256)" in table
    assert "xlm-r-base@512 distilx: time budget" in table
    assert "| 7 gpu_train_smoke.py | ok | 6 | PASS |" in table
    written = gpu_summary.unpack(tmp_path / "out" / "gpu_results.json", tmp_path / "docs")
    assert {p.name for p in written} >= {"gpu_train.json", "bench_loss.json", "tune_loss_kernels.json"}
    assert json.loads((tmp_path / "docs" / "gpu_train.json").read_text())[0]["side"] == "distilx"
