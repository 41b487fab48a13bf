"""The cluster examples, run: examples/slurm_distil.sbatch under a stand-in srun and scontrol
(tests/fake_slurm: local tasks, signals forwarded, the highest task status) — SIGUSR1 to the batch shell,
as `--signal=B:USR1@120` sends it, stops the run with a checkpoint, the script requeues the job on status 75,
and the requeued job finishes the run; and examples/k8s_elastic.yaml's container command line (distilx.launch,
elastic c10d rendezvous) on loopback, stopped by the SIGTERM a drained node sends and started again."""

import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import yaml

from cluster_helpers import finish, free_port, run, start, steps_logged, wait_until
from distilx.preemption import EXIT_PREEMPTED

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAKE_SLURM = Path(__file__).parent / "fake_slurm"


def write_run_config(tiny_run_inputs, folder: Path, steps: int) -> Path:
    teacher, train_file, _ = tiny_run_inputs
    path = folder / "run.json"
    path.write_text(json.dumps(dict(teacher=str(teacher), train_files=[str(train_file)], student_layers=2, seq_len=48,
                                    batch_size=8, max_steps=steps, save_every=3, log_every=1, seed=7, kl_on="targets",
                                    progress=False, tensorboard=False, eval_batches=0, device="cpu")))
    return path


@pytest.mark.parametrize("launcher", ["srun", "torchrun"])
def test_the_slurm_script_requeues_a_preempted_run_until_it_is_done(tiny_run_inputs, tmp_path, launcher):
    out, log = tmp_path / "run", tmp_path / "slurm.log"
    job = dict(PATH=f"{FAKE_SLURM}{os.pathsep}{os.environ['PATH']}", SLURM_JOB_ID="4242", SLURM_NTASKS="2",
               SLURM_JOB_NUM_NODES="1", SLURM_JOB_NODELIST="node1", GPUS_PER_NODE="2", LAUNCHER=launcher,
               RUN_CONFIG=write_run_config(tiny_run_inputs, tmp_path, 8), RUN_DIR=out, PYTHON=sys.executable,
               FAKE_SLURM_LOG=log)
    script = ["bash", str(EXAMPLES / "slurm_distil.sbatch")]
    first = start(script, MASTER_PORT=free_port(), **job)
    wait_until(lambda: steps_logged(out) >= 2, first, "step 2")
    first.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@120 does: to the batch shell only
    status, printed, err = finish(first)
    assert status == EXIT_PREEMPTED, err[-3000:]
    assert "requeueing job 4242" in printed and log.read_text() == "requeue 4242\n"
    stopped = steps_logged(out)
    assert 2 <= stopped < 8
    second = run(script, MASTER_PORT=free_port(), **job)  # the requeued job
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from step {stopped}" in second.stdout
    assert log.read_text() == "requeue 4242\n"  # done: not requeued again
    assert json.loads((out / "metrics.json").read_text())["steps"] == 8
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def k8s_command(values: dict) -> tuple[list[str], dict]:
    """The Job's container command line with its $(VAR) references expanded as Kubernetes does, `values`
    overriding the manifest's env; and the Job's spec."""
    documents = list(yaml.safe_load_all((EXAMPLES / "k8s_elastic.yaml").read_text()))
    job = next(d for d in documents if d["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    variables = {e["name"]: e["value"] for e in container["env"]}
    variables.update(values)
    expand = lambda text: re.sub(r"\$\((\w+)\)", lambda m: str(variables[m.group(1)]), text)  # noqa: E731
    command = [expand(part) for part in container["command"] + container["args"]]
    return [sys.executable if part == "python" else part for part in command], job["spec"]


def test_the_kubernetes_example_runs_on_loopback(tiny_run_inputs, tmp_path):
    out = tmp_path / "run"
    command, spec = k8s_command(dict(MIN_NODES=1, MAX_NODES=1, PROCS_PER_NODE=2, JOB_NAME="test",
                                     RDZV_ENDPOINT=f"127.0.0.1:{free_port()}",
                                     RUN_CONFIG=write_run_config(tiny_run_inputs, tmp_path, 6), RUN_DIR=out))
    ignored = [rule["onExitCodes"]["values"] for rule in spec["podFailurePolicy"]["rules"]
               if rule["action"] == "Ignore" and "onExitCodes" in rule]
    assert ignored == [[EXIT_PREEMPTED]]  # a preempted pod is replaced, not counted as a failure
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > 300  # distilx.launch's shutdown timeout
    pod = start(command)
    wait_until(lambda: steps_logged(out) >= 2, pod, "step 2")
    pod.send_signal(signal.SIGTERM)  # a drained node: SIGTERM to the container's main process
    status, _, err = finish(pod)
    assert status == EXIT_PREEMPTED, err[-3000:]
    replaced = run(command)  # the replacement pod
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert "resuming from step" in replaced.stdout
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6
