"""Cluster runs for real, on loopback with gloo: signals to a 2-process run (to one worker only, to the launcher,
a second one during the save) stop every process together with a checkpoint and status 75, and the resumed
run ends bit-identical to an uninterrupted one; `torchrun --max-restarts 1` with a worker SIGKILLed continues
from the last checkpoint by itself (`--resume auto`) to the same weights; two torchrun agents of 2 processes
each (c10d rendezvous) train the student a 4-process single-node run trains; and a checkpoint resumed on
another number of processes (2 -> 1, 1 -> 2) uses every document of the epoch exactly once, counted from
the stream's own record of each batch."""

import collections
import json
import math
import os
import signal
import sys

import pytest

from cluster_helpers import (cli, finish, free_port, interrupt, launch, newest_step, records, run, same_weights,
                             start, steps_logged, train_flags, wait_until, worker_pid)
from distilx import TrainConfig
from distilx.checkpoint import list_checkpoints, verify_checkpoint
from distilx.data import MaskedLMStream, Tokenizer
from distilx.preemption import EXIT_PREEMPTED
from pipeline_helpers import corpus_slice

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_process_reference(tiny_run_inputs, tmp_path_factory):
    """An uninterrupted 2-process run of 10 steps (checkpoints every 2)."""
    teacher, train_file, _ = tiny_run_inputs
    out = tmp_path_factory.mktemp("reference") / "run"
    done = run(launch(2, train_flags(teacher, train_file, out, max_steps=10, save_every=2), port=free_port()))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_a_signal_to_one_process_stops_both_and_the_run_resumes_bit_exactly(tiny_run_inputs, two_process_reference,
                                                                           tmp_path):
    teacher, train_file, _ = tiny_run_inputs
    out = tmp_path / "run"
    flags = train_flags(teacher, train_file, out, max_steps=10, save_every=2, resume="auto")
    # SIGUSR1 to the rank-1 worker alone, mid-step: rank 0 learns it in the step's all-reduce and stops too
    proc = start(launch(2, flags, port=free_port()))
    seen = interrupt(proc, out, "step 2", signal.SIGUSR1, worker_pid(proc.pid, 1), delay=0.02)
    status, printed, err = finish(proc)
    assert status == EXIT_PREEMPTED, err[-3000:]
    assert "stopped by a signal to another process after step" in printed  # rank 0 prints; rank 1 was signalled
    first = newest_step(out)
    assert first >= seen["logged"] + 1 and steps_logged(out) == first
    verify_checkpoint(list_checkpoints(out / "checkpoints")[-1])
    # SIGTERM to the launcher while a periodic checkpoint is written (it forwards it to both workers), and a
    # second SIGTERM to rank 0 while the stop's own checkpoint is written
    proc = start(launch(2, flags, port=free_port()))
    rank0 = worker_pid(proc.pid, 0)
    seen = interrupt(proc, out, "checkpoint", signal.SIGTERM, proc.pid, second=(signal.SIGTERM, rank0))
    status, printed, err = finish(proc)
    assert status == EXIT_PREEMPTED, err[-3000:]
    assert "stopped by SIGTERM" in printed and "received SIGTERM and forwarded it" in err
    assert newest_step(out) > first
    verify_checkpoint(list_checkpoints(out / "checkpoints")[-1])
    final = run(launch(2, flags, port=free_port()))
    assert final.returncode == 0, final.stderr[-3000:]
    assert same_weights(out, two_process_reference)
    assert records(out) == records(two_process_reference)


def test_a_killed_worker_is_restarted_and_the_run_continues_from_its_checkpoint(tiny_run_inputs, two_process_reference,
                                                                               tmp_path):
    teacher, train_file, _ = tiny_run_inputs
    out = tmp_path / "run"
    flags = train_flags(teacher, train_file, out, max_steps=10, save_every=2, resume="auto")
    proc = start(launch(2, flags, port=free_port(), extra=("--max-restarts", "1")))
    wait_until(lambda: steps_logged(out) >= 5, proc, "step 5")
    os.kill(worker_pid(proc.pid, 1), signal.SIGKILL)
    status, printed, err = finish(proc)
    assert status == 0, err[-3000:]
    assert "resuming from step" in printed  # the restarted workers continued by themselves
    assert same_weights(out, two_process_reference)
    assert records(out) == records(two_process_reference)


def test_two_agents_train_the_student_of_one_four_process_node(tiny_run_inputs, tmp_path):
    teacher, train_file, _ = tiny_run_inputs
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    single = tmp_path / "single"
    done = run(torchrun + ["--nproc-per-node", "4", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                           "-m", "distilx.cli", "train", *train_flags(teacher, train_file, single, max_steps=4)])
    assert done.returncode == 0, done.stderr[-3000:]
    two = tmp_path / "two-agents"
    endpoint = f"127.0.0.1:{free_port()}"
    agents = [start(torchrun + ["--nnodes", "2", "--nproc-per-node", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                                endpoint, "--rdzv-id", "two-agents", "-m", "distilx.cli", "train",
                                *train_flags(teacher, train_file, two, max_steps=4)]) for _ in range(2)]
    outcomes = [finish(agent) for agent in agents]
    assert all(status == 0 for status, _, _ in outcomes), [err[-2000:] for _, _, err in outcomes]
    assert same_weights(two, single)
    assert records(two) == records(single)


def _epoch_rows(out, world):
    """Row starts of every batch of an uninterrupted epoch 0 of `world` processes (the run's own options)."""
    config = TrainConfig.load(out / "train_config.json")
    tokenizer = Tokenizer(config.teacher)
    rows = []
    for rank in range(world):
        stream = MaskedLMStream(config.train_files, tokenizer, **config.stream_options(rank, world))
        for _ in stream:
            rows.append(tuple(stream.last_origin.reshape(-1).tolist()))
    return rows


def _recorded(record_dir):
    """The origins the runs' streams recorded for epoch 0, and every record."""
    everything = [json.loads(line) for path in sorted(record_dir.glob("rank*.jsonl")) for line in path.open()]
    return [tuple(r["origin"]) for r in everything if r["epoch"] == 0], everything


@pytest.mark.parametrize("old,new", [(2, 1), (1, 2)])
def test_a_changed_world_size_uses_every_document_of_the_epoch_once(tiny_run_inputs, tmp_path, old, new):
    """An epoch-counted run (epochs=1) stopped by SIGTERM mid-epoch, resumed on another number of processes."""
    teacher = tiny_run_inputs[0]
    train_file, _ = corpus_slice(tmp_path, every=300)  # a short epoch
    out, record = tmp_path / "run", tmp_path / "record"
    record.mkdir()
    flags = train_flags(teacher, train_file, out, max_steps="none", epochs=1, save_every=1000, resume="auto")

    def command(world):
        return launch(world, flags, port=free_port(), record=True) if world > 1 else cli(flags, record=True)

    proc = start(command(old), DISTILX_TEST_RECORD=record)
    interrupt(proc, out, "step 3", signal.SIGTERM, proc.pid)
    status, _, err = finish(proc)
    assert status == EXIT_PREEMPTED, err[-3000:]
    stopped = newest_step(out)
    done = run(command(new), DISTILX_TEST_RECORD=record)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"the checkpoint was written by {old} process" in done.stdout and "each batch once" in done.stdout
    epoch, everything = _recorded(record)
    full = _epoch_rows(out, old)
    counted = collections.Counter(epoch)
    assert max(counted.values()) == 1, "a batch of the epoch was used twice"
    assert sorted(epoch) == sorted(full), "the epoch's batches, every one of them"
    documents = {row[i] for row in full for i in range(0, len(row), 2)}
    assert {row[i] for row in epoch for i in range(0, len(row), 2)} == documents
    # the run ends with the epoch: the first part's steps, then the rest dealt to `new` processes
    rest = len(full) - stopped * old
    steps = json.loads((out / "metrics.json").read_text())["steps"]
    assert steps == stopped + math.ceil(rest / new)
    assert len(everything) == stopped * old + (steps - stopped) * new
