"""Preemption (distilx.preemption): real signals to a real `distilx train` process at chosen moments — while it
starts up, in the middle of a step, while a checkpoint is written, and a second signal while the stop's own
checkpoint is written — each ends the run with a checkpoint and exit status 75, and the resumed attempts end
bit-identical to an uninterrupted run; the time limit; the durations and signal names the knobs take."""

import os
import random
import signal
import time

import pytest

from cluster_helpers import cli, finish, interrupt, newest_step, records, run, same_weights, start, train_flags
from distilx import TrainConfig
from distilx.checkpoint import list_checkpoints, verify_checkpoint
from distilx.preemption import EXIT_PREEMPTED, Preemption, parse_duration, signal_of


@pytest.mark.parametrize("text,seconds", [("3600", 3600), ("90m", 5400), ("12h", 43200), ("2d", 172800),
                                          ("1:30:00", 5400), ("2-00:00:00", 172800), ("05:00", 300), ("1.5h", 5400),
                                          ("1-12", 129600), ("1-12:30", 131400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_knobs_are_one_line_errors():
    for bad in ("soon", "1h30", "-5m"):
        with pytest.raises(ValueError, match=f"time_limit={bad!r} is not a duration"):
            TrainConfig(time_limit=bad).validated()
    with pytest.raises(ValueError, match="'TERMINATE' is not a signal name"):
        TrainConfig(preempt_signals=["TERMINATE"]).validated()
    with pytest.raises(ValueError, match="SIGKILL cannot be caught"):
        TrainConfig(preempt_signals=["KILL"]).validated()
    assert [signal_of(n) for n in ("term", "SIGUSR1", "10")] == [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR1]


def test_the_deadline_counts_the_longest_step_and_the_margin(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_END_TIME", str(int(time.time()) + 600))
    late = Preemption.for_run(TrainConfig(time_limit="2h", time_limit_margin="5m"))
    assert late.deadline == pytest.approx(time.time() + 300, abs=5)  # SLURM's end (sooner) minus the margin
    assert not late.due()
    late.step_took(301)  # the next step would end past the deadline
    assert late.due() and late.reason == "the time limit"
    monkeypatch.delenv("SLURM_JOB_END_TIME")
    monkeypatch.setenv("DISTILX_JOB_START", str(time.time() - 3600))  # a restarted worker of a job an hour old
    assert Preemption.for_run(TrainConfig(time_limit="1h", time_limit_margin="0")).due()


def test_a_signal_is_only_noted_while_a_run_holds_it():
    with Preemption(["USR1"]) as watch:
        assert watch.signal is None
        os.kill(os.getpid(), signal.SIGUSR1)  # handled at once (main thread), never kills
        time.sleep(0.01)
        assert watch.signal == signal.SIGUSR1 and watch.due() and watch.reason == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # given back
    with Preemption(["USR1"]) as watch:
        assert watch.signal is None  # the earlier run's signal was consumed


@pytest.mark.slow
def test_signals_at_chosen_moments_stop_cleanly_and_resume_bit_exactly(tiny_run_inputs, tmp_path):
    """One process: SIGTERM while it starts up (no step yet: status 75, nothing written), SIGUSR1 in the middle
    of a step, SIGTERM while a periodic checkpoint is written with a second SIGTERM during the stop's own save;
    each attempt exits 75 with a checkpoint that verifies, the next one resumes (`--resume auto`), and the last
    ends with the weights and metric records of the uninterrupted run."""
    teacher, train_file, _ = tiny_run_inputs
    reference = tmp_path / "reference"
    done = run(cli(train_flags(teacher, train_file, reference)))
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "run"
    command = cli(train_flags(teacher, train_file, out, resume="auto"))
    rng = random.Random(7)
    plan = [("start-up", signal.SIGTERM, False), (f"step {rng.randint(2, 3)}", signal.SIGUSR1, False),
            ("checkpoint", signal.SIGTERM, True)]
    for moment, sig, second in plan:
        before = newest_step(out)
        proc = start(command)
        seen = interrupt(proc, out, moment, sig, proc.pid, delay=rng.uniform(0, 0.05),
                         second=(signal.SIGTERM, proc.pid) if second else None)
        status, printed, err = finish(proc)
        assert status == EXIT_PREEMPTED, err[-3000:]
        assert f"stopped by {sig.name} after step" in printed
        if moment == "start-up":
            assert newest_step(out) == before  # stopped before its first step: nothing new to save
            continue
        stopped_at = newest_step(out)
        assert stopped_at >= seen["logged"] + (moment != "checkpoint")  # the step in flight was completed
        verify_checkpoint(list_checkpoints(out / "checkpoints")[-1])
        if second:
            assert seen["second"], "the second signal should have met the stop's checkpoint being written"
    final = run(command)
    assert final.returncode == 0, final.stderr[-3000:]
    assert same_weights(out, reference)
    assert records(out) == records(reference)
    assert not list((out / "checkpoints").glob("*.tmp-*"))


@pytest.mark.slow
def test_a_time_limit_stops_the_run_with_a_checkpoint_before_the_deadline(tiny_run_inputs, tmp_path, monkeypatch):
    """SLURM's job end 45 s from now, no margin: the run trains, then stops before a step would end past it."""
    from distilx import train
    from pipeline_helpers import run_config

    end = time.time() + 45
    monkeypatch.setenv("SLURM_JOB_END_TIME", str(int(end)))
    out = tmp_path / "run"
    result = train(run_config(*tiny_run_inputs, out, max_steps=100_000, save_every=100_000, eval_batches=0,
                              time_limit_margin="0"))
    assert result.preempted == "the time limit"
    assert time.time() < end + 30  # stopped in time (the save after the last step included, on a loaded box)
    assert result.steps > 0 and newest_step(out) == result.steps
    verify_checkpoint(list_checkpoints(out / "checkpoints")[-1])


def test_the_launcher_reads_a_preemption_from_the_workers_exit_codes():
    from distilx.launch import stopped_for_preemption

    term, kill = -signal.SIGTERM, -signal.SIGKILL
    assert stopped_for_preemption([EXIT_PREEMPTED]) and stopped_for_preemption([EXIT_PREEMPTED, EXIT_PREEMPTED])
    # one rank exited 75 after the stop's checkpoint; torchrun's SIGTERM ended the other on its way out
    assert stopped_for_preemption([term, EXIT_PREEMPTED])
    for codes in ([term], [kill, EXIT_PREEMPTED], [1, EXIT_PREEMPTED], [1], []):
        assert not stopped_for_preemption(codes), codes
