"""Shared tools of the preemption and cluster tests: the command lines of tiny CPU runs (one process, or
gloo processes on loopback under distilx.launch / torchrun), the processes' pids, waiting on a run's
progress as its folder shows it, and signals sent at a chosen moment."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from distilx.checkpoint import list_checkpoints

TESTS = Path(__file__).parent
TIMING_FIELDS = ("tokens_per_s", "data_wait_share")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_flags(teacher, train_file, out, **overrides) -> list[str]:
    """The flags of a tiny CPU run (the test teacher, KL on the targets, a metrics line per step)."""
    flags = dict(teacher=teacher, train_files=train_file, output_dir=out, student_layers=2, seq_len=48, batch_size=8,
                 max_steps=12, save_every=4, keep_last=2, log_every=1, seed=7, kl_on="targets", progress="false",
                 tensorboard="false", eval_batches=0, device="cpu")
    flags.update(overrides)
    out_flags = []
    for name, value in flags.items():
        if value is None:
            continue
        out_flags.append("--" + name.replace("_", "-"))
        if value is not True:
            out_flags.append(str(value))
    return out_flags


def env(**extra) -> dict:
    """The tests folder importable (recording_cli.py) ahead of the caller's path to distilx; one thread."""
    python_path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path, **{k: str(v) for k, v in extra.items()}}


def cli(flags: list[str], record: bool = False) -> list[str]:
    """One process of `distilx train` (recording_cli.py records each batch's origin)."""
    entry = [str(TESTS / "recording_cli.py")] if record else ["-m", "distilx.cli"]
    return [sys.executable, *entry, "train", *flags]


def launch(nproc: int, flags: list[str], *, port: int, record: bool = False, extra: tuple = ()) -> list[str]:
    """`python -m distilx.launch` (torchrun for preemptible jobs) of `nproc` gloo workers on loopback."""
    entry = [str(TESTS / "recording_cli.py")] if record else ["-m", "distilx.cli"]
    return [sys.executable, "-m", "distilx.launch", "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
            "--master-port", str(port), "--monitor-interval", "0.2", *extra, *entry, "train", *flags]


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def worker_pid(agent: int, rank: int, timeout: float = 120) -> int:
    """The pid of the agent's worker process of global rank `rank`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in children(agent):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no worker of rank {rank} under {agent}")


def steps_logged(out: Path) -> int:
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (OSError, ValueError, KeyError):
        return 0


def records(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS} for line in lines]


def saving(out: Path) -> set[str]:
    """The checkpoints being written now (their .tmp folders)."""
    return {p.name for p in (out / "checkpoints").glob("step-*.tmp-*")} if (out / "checkpoints").is_dir() else set()


def wait_until(condition, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (status {proc.returncode}) before {what}: {_tail(proc)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _tail(proc) -> str:
    try:
        return proc.stderr.read()[-3000:] if proc.stderr else ""
    except (OSError, ValueError):
        return ""


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    """(status, stdout, stderr) once the process ends."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def start(command: list[str], **extra_env) -> subprocess.Popen:
    return subprocess.Popen(command, env=env(**extra_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(command: list[str], timeout: float = 900, **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env(**extra_env), capture_output=True, text=True, timeout=timeout)


def interrupt(proc: subprocess.Popen, out: Path, moment: str, sig: signal.Signals, target: int, *,
              delay: float = 0.0, second: tuple[signal.Signals, int] | None = None) -> dict:
    """Send `sig` to pid `target` at `moment` of the run in `out`: "start-up" (once the run holds its folder,
    before its first step), "step N" (`delay` s after step N was logged: mid-step), "checkpoint" (while a
    periodic checkpoint is being written). With `second` (signal, pid), send that one too while the stop's own
    checkpoint is being written. Returns what the run had logged and was writing when signalled."""
    if moment == "start-up":
        wait_until(lambda: (out / ".distilx.lock").exists(), proc, "the run held its folder")
    elif moment == "checkpoint":
        wait_until(lambda: bool(saving(out)), proc, "a checkpoint write")
    else:
        step = int(moment.split()[1])
        wait_until(lambda: steps_logged(out) >= step, proc, f"step {step}")
        time.sleep(delay)
    seen = {"logged": steps_logged(out), "saving": saving(out)}
    os.kill(target, sig)
    if second is not None:
        before = seen["saving"]
        try:
            wait_until(lambda: bool(saving(out) - before), proc, "the stop's checkpoint write", timeout=120)
            os.kill(second[1], second[0])
            seen["second"] = True
        except AssertionError:  # the stop's checkpoint was already there (a periodic one): nothing to interrupt
            seen["second"] = False
    return seen


def newest_step(out: Path) -> int:
    ckpts = list_checkpoints(out / "checkpoints")
    return int(ckpts[-1].name.split("-")[1]) if ckpts else 0


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
