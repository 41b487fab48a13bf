"""Fault injection: SIGKILL a training run at random moments, resume it each time, and check that it
ends bit-identical to an uninterrupted run (CPU).

    python tests/fault_injection.py --kills 10 --seed 0        # prints one line per kill and a verdict

Every attempt is a fresh `python -m distilx.cli train` process (with --resume after the first) on
the tiny real-vocabulary teacher of the test suite, checkpointing at every step. Each attempt is
SIGKILLed at a random moment drawn from its own progress, as its output folder shows it: a random
time into start-up, a random time after one of the next few steps was logged (the kills spread over
the run), or while one of the next checkpoints is being written (its .tmp folder exists); the last
kill lands in the final save, once it has written a randomly chosen one of its files. Then one last
attempt runs to the end, and:
- the final model.safetensors equals the uninterrupted run's, tensor for tensor, bit for bit;
- metrics.jsonl holds the same records (timing fields aside), each step once, in order;
- every checkpoint verifies against its checksums, all belong to the one run, no .tmp is left.
tests/test_fault_injection.py runs a reduced version (2 kills) as a slow test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from distilx.checkpoint import CheckpointError, list_checkpoints, verify_checkpoint
from distilx.run_dir import MARKER
from pipeline_helpers import corpus_slice, make_tiny_teacher

TIMING_FIELDS = ("tokens_per_s", "data_wait_share")


def _command(teacher: Path, train_file: Path, out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "distilx.cli", "train", "--teacher", str(teacher), "--train-files",
            str(train_file), "--output-dir", str(out), "--student-layers", "2", "--seq-len", "48", "--batch-size",
            "8", "--max-steps", str(steps), "--save-every", "1", "--keep-last", "2", "--log-every", "1",
            "--seed", "7", "--kl-on", "targets", "--progress", "false", "--tensorboard", "false",
            "--eval-batches", "0", "--device", "cpu"]


def _records(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS} for line in lines if line.strip()]


def _newest_step(out: Path, since_ns: int) -> int:
    """The step of the newest metrics record written since `since_ns` (0 if none)."""
    path = out / "metrics.jsonl"
    try:
        if path.stat().st_mtime_ns < since_ns:
            return 0
        return json.loads(path.read_text().splitlines()[-1])["step"]
    except (OSError, IndexError, ValueError):  # absent, empty, or a record being written
        return 0


# what the final save writes, in order: a kill as soon as one of them exists lands inside that save
FINAL_OUTPUTS = ("model.safetensors", "tokenizer.json", "metrics.json", "loss_curves.png")


class Kill:
    """When to SIGKILL an attempt: `after` seconds after its start ("start-up"); `after` seconds after
    step `step` is logged ("step"); as soon as checkpoint `step` is being written, i.e. its .tmp
    folder exists ("checkpoint"); or as soon as the final save has written `output` ("final")."""

    def __init__(self, kind: str, step: int = 0, after: float = 0.0, output: str = ""):
        self.kind, self.step, self.after, self.output = kind, step, after, output
        self.reached = None

    def due(self, out: Path, elapsed: float, since_ns: int) -> bool:
        if self.kind == "start-up":
            return elapsed >= self.after
        if self.kind == "checkpoint":
            return any((out / "checkpoints").glob(f"step-{self.step:08d}.tmp-*"))
        if self.kind == "final":
            path = out / self.output
            return path.is_file() and path.stat().st_mtime_ns >= since_ns
        if self.reached is None and _newest_step(out, since_ns) >= self.step:
            self.reached = elapsed
        return self.reached is not None and elapsed >= self.reached + self.after

    def __str__(self) -> str:
        if self.kind == "start-up":
            return f"{self.after:.2f} s after its start"
        if self.kind == "checkpoint":
            return f"while writing checkpoint step-{self.step:08d}"
        if self.kind == "final":
            return f"in the final save, once it had written {self.output}"
        return f"{self.after:.3f} s after logging step {self.step}"


def _run(command: list[str], env: dict, out: Path, kill: Kill | None) -> str:
    """One attempt, killed when `kill` is due (or run to the end); returns what happened."""
    start, since_ns = time.monotonic(), time.time_ns()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        if kill is not None and kill.due(out, time.monotonic() - start, since_ns):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            logged = _newest_step(out, since_ns)
            return f"killed {kill} ({f'step {logged} logged by then' if logged else 'before its first step'})"
        time.sleep(0.002)
    if proc.returncode != 0:
        raise RuntimeError(f"attempt failed with status {proc.returncode}: {proc.stderr.read()[-2000:]}")
    return f"finished in {time.monotonic() - start:.1f} s"


def _draw_kill(rng: random.Random, done: int, steps: int, kills_left: int, timing: dict) -> Kill:
    """A random moment of the next attempt, which resumes after step `done`; the last kill lands in
    the final save."""
    if done >= steps:  # a finished run only starts up and saves its outputs again
        return Kill("start-up", after=rng.uniform(0, timing["startup"] + timing["final"]))
    if kills_left == 1:
        return Kill("final", output=rng.choice(FINAL_OUTPUTS))
    kind = rng.choice(["start-up", "step", "step", "checkpoint"])
    if kind == "start-up":
        return Kill(kind, after=rng.uniform(0, timing["startup"]))
    step = rng.randint(done + 1, done + max(1, (steps - done) // kills_left))  # spread over what is left
    return Kill(kind, step, rng.uniform(0, timing["step"]))


def run(kills: int, seed: int, steps: int, workdir: Path, log=print) -> bool:
    rng = random.Random(seed)
    teacher = make_tiny_teacher(workdir / "teacher")
    train_file, _ = corpus_slice(workdir)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    # the uninterrupted run, timed: start-up (until its first record), a step, the final save
    reference = workdir / "reference"
    start = time.monotonic()
    proc = subprocess.Popen(_command(teacher, train_file, reference, steps), env=env, stdout=subprocess.DEVNULL)
    startup, last = None, None
    while proc.poll() is None:
        newest = _newest_step(reference, 0)
        if newest and startup is None:
            startup = time.monotonic() - start
        if newest == steps and last is None:
            last = time.monotonic() - start
        time.sleep(0.002)
    if proc.returncode != 0 or startup is None or last is None:
        raise RuntimeError("the uninterrupted run failed")
    timing = {"startup": startup, "step": (last - startup) / max(1, steps - 1),
              "final": time.monotonic() - start - last}
    log(f"uninterrupted run: {steps} steps, start-up {startup:.1f} s, {timing['step'] * 1e3:.0f} ms per step "
        f"(checkpoint included), final save {timing['final']:.1f} s, {time.monotonic() - start:.1f} s in all")

    out, attempt, killed = workdir / "killed", 0, 0
    command = _command(teacher, train_file, out, steps)
    while True:
        attempt += 1
        ckpts = list_checkpoints(out / "checkpoints")
        done = int(ckpts[-1].name.split("-")[1]) if ckpts else 0
        kill = _draw_kill(rng, done, steps, kills - killed, timing) if killed < kills else None
        outcome = _run(command + (["--resume"] if attempt > 1 else []), env, out, kill)
        log(f"attempt {attempt:2d} (from step {done}): {outcome}")
        killed += outcome.startswith("killed")
        if kill is None:
            break

    ok = True
    ref_weights, got_weights = load_file(reference / "model.safetensors"), load_file(out / "model.safetensors")
    same = ref_weights.keys() == got_weights.keys() and all(torch.equal(ref_weights[k], got_weights[k])
                                                              for k in ref_weights)
    log(f"final weights bit-identical to the uninterrupted run: {same}")
    ok &= same
    records = _records(out)
    same_records = records == _records(reference) and [r["step"] for r in records] == list(range(1, steps + 1))
    log(f"metrics.jsonl records identical (timing fields aside), each step once: {same_records}")
    ok &= same_records
    run_id = json.loads((out / MARKER).read_text())["run_id"]
    ckpts = list_checkpoints(out / "checkpoints")
    try:
        intact = all(verify_checkpoint(c)["run_id"] == run_id for c in ckpts)
    except CheckpointError as exc:
        intact = False
        log(str(exc))
    leftovers = sorted(p.name for p in (out / "checkpoints").iterdir() if p not in ckpts)
    log(f"checkpoints {[c.name for c in ckpts]} verify and belong to run {run_id}: {intact}; "
        f"other entries: {leftovers or 'none'}")
    ok &= intact and not leftovers
    log(f"{killed} kills, {attempt} attempts: {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10, help="SIGKILLs before the last attempt runs to the end")
    ap.add_argument("--seed", type=int, default=0, help="seeds the kill delays")
    ap.add_argument("--steps", type=int, default=24, help="optimizer steps of the run")
    ap.add_argument("--workdir", help="where the runs go (default: a fresh temporary folder)")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="distilx-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"fault injection in {workdir}: {args.kills} kills, seed {args.seed}, {args.steps} steps")
    return 0 if run(args.kills, args.seed, args.steps, workdir) else 1


if __name__ == "__main__":
    sys.exit(main())
