"""Two processes on loopback (torchrun, gloo): disjoint data, identical parameters, rank 0 writes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from pipeline_helpers import corpus_slice, kernel_doc_slice, make_tiny_classifier, make_tiny_teacher


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(tmp_path, teacher, train_file, task="masked-lm"):
    """torchrun's 2 gloo processes on ddp_worker.py; returns (rank 0's report, rank 1's report, output folder)."""
    out, reports = tmp_path / "run", tmp_path / "reports"
    reports.mkdir()
    worker = Path(__file__).with_name("ddp_worker.py")
    # the tests folder for ddp_worker's imports, ahead of (not instead of) the caller's path to distilx
    python_path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), str(worker), str(teacher), str(train_file), str(out), str(reports), task]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1))
    return r0, r1, out


def check_two_process_run(r0, r1, out):
    assert r0["world_size"] == r1["world_size"] == 2 and r0["steps"] == r1["steps"] == 3
    # after 3 optimizer steps on different data, DDP kept the replicas identical
    assert r0["params"] == r1["params"]
    # the ranks read disjoint shards of the corpus
    s0, s1 = ({tuple(s) for s in r["sequences"]} for r in (r0, r1))
    assert len(s0) > 10 and len(s1) > 10
    assert not (s0 & s1)
    # one writer: one metrics line per step, the checkpoints of rank 0, one HF folder
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002", "step-00000003"]
    from distilx.checkpoint import load_checkpoint
    _, state = load_checkpoint(out / "checkpoints" / "step-00000003")
    assert state["world_size"] == 2 and len(state["stream"]) == 2 and state["stream"][0] != state["stream"][1]
    assert (out / "model.safetensors").is_file()


def test_two_process_gloo_run(tmp_path):
    teacher = make_tiny_teacher(tmp_path / "teacher")
    train_file, _ = corpus_slice(tmp_path)
    check_two_process_run(*run_two_processes(tmp_path, teacher, train_file))


def test_two_process_gloo_run_of_a_classifier(tmp_path):
    labels, train_file, _ = kernel_doc_slice(tmp_path)
    teacher = make_tiny_classifier(tmp_path / "teacher", labels)
    r0, r1, out = run_two_processes(tmp_path, teacher, train_file, "sequence-classification")
    check_two_process_run(r0, r1, out)
    # every example is whole on one rank, and both ranks read as many
    assert len(r0["sequences"]) == len(r1["sequences"]) == 6 * 4
