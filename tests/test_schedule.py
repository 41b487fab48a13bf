"""The learning-rate schedule: the recipe's warmup and linear decay, and what a resume with another length
does to it (distilx.schedule), against the formulas written out here."""

import math

import pytest
import torch

from distilx.schedule import Schedule


def recipe(step, total, ratio):
    """Linear warmup over ceil(ratio * total) steps (at least 1), then linear decay to 0 at `total`."""
    warmup = max(1, math.ceil(total * ratio)) if ratio > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def rates(schedule, steps, state=None, resume_at=None, total=None):
    """The lr each optimizer step uses, as torch's LambdaLR applies it (peak lr 1)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = schedule.lambda_lr(optimizer)
    if resume_at is not None:  # as a resume does: the counter from the checkpoint, then the re-plan
        for _ in range(resume_at):
            scheduler.step()
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("total,ratio", [(20, 0.05), (7, 0.0), (50, 0.3), (1, 0.05)])
def test_a_planned_run_follows_the_recipe_exactly(total, ratio):
    assert rates(Schedule(total, ratio), total) == [recipe(s, total, ratio) for s in range(total)]


def resumed(planned, step, new_total, ratio=0.1, lr=1.0):
    """A run planned for `planned` steps, checkpointed at `step`, resumed for `new_total`: (note, the
    rates of the resumed steps, the rates the first run used)."""
    first = Schedule(planned, ratio)
    used = rates(first, step)
    again = Schedule(new_total, ratio)  # what the resumed run builds before it loads the checkpoint
    note = again.resume(first.state_dict(), step, new_total, lr)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = again.lambda_lr(optimizer)
    state = first.lambda_lr(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)).state_dict()
    state["last_epoch"] = step
    scheduler.load_state_dict(state)
    again.sync(scheduler)
    out = []
    for _ in range(new_total - step):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return note, out, used


def test_an_unchanged_length_keeps_every_rate():
    note, after, before = resumed(40, 17, 40)
    assert note is None
    assert before + after == [recipe(s, 40, 0.1) for s in range(40)]


def test_a_longer_run_continues_from_the_current_rate_down_to_zero_at_the_new_end():
    """max_steps 50 -> 100 at step 30: no jump; linear decay from the rate of step 30 to 0 at step 100."""
    note, after, before = resumed(50, 30, 100)
    assert before == [recipe(s, 50, 0.1) for s in range(30)]
    now = recipe(30, 50, 0.1)
    assert after[0] == pytest.approx(now)
    # the decay part of the old plan (from step 30 to 50) stretched over steps 30..100: linear, 0 at 100
    expected = [now * (100 - s) / 70 for s in range(30, 100)]
    assert after == pytest.approx(expected, abs=1e-12)
    assert "planned for 50 steps, now 100" in note and "decays linearly to 0 at step 100" in note


def test_a_shorter_run_squeezes_the_rest():
    note, after, _ = resumed(100, 20, 40)
    now = recipe(20, 100, 0.1)
    assert after == pytest.approx([now * (40 - s) / 20 for s in range(20, 40)], abs=1e-12)
    assert "squeezed" in note


def test_an_unfinished_warmup_is_stretched_with_the_rest():
    note, after, before = resumed(100, 4, 200)  # warmup 10 steps; resumed at step 4
    assert before == [recipe(s, 100, 0.1) for s in range(4)]
    # old plan steps 4..100 mapped linearly onto 4..200: u = 4 + (s - 4) * 96 / 196 (capped at the peak)
    expected = [min(1.0, recipe(4 + (s - 4) * 96 / 196, 100, 0.1)) for s in range(4, 200)]
    assert after == pytest.approx(expected, abs=1e-12)
    assert max(after) == pytest.approx(1.0, abs=0.01)  # the peak is still reached


def test_a_finished_run_trained_longer_runs_a_new_cycle():
    """The issue's case: max_steps 50 -> 60 after the end. Before, the rate jumped from 0.0 (step 50) to
    2.1e-4 (step 60) because the schedule was rebuilt for 60 steps; now the added steps warm up to lr and
    decay to 0 at step 60, as a 10-step run would."""
    note, after, before = resumed(50, 50, 60, lr=5e-4)
    assert before[-1] == recipe(49, 50, 0.1)  # (the first run's rates, peak 1)
    assert after == pytest.approx([5e-4 * recipe(s, 10, 0.1) for s in range(10)], abs=1e-15)
    assert "schedule ended at step 50" in note and "steps 51-60 run a new cycle" in note


def test_resumes_compose():
    """Two changes of length: the second re-plans the first's re-plan."""
    first = Schedule(50, 0.1)
    second = Schedule(100, 0.1)
    second.resume(first.state_dict(), 30, 100, 1.0)
    third = Schedule(80, 0.1)
    third.resume(second.state_dict(), 60, 80, 1.0)
    assert [third.factor(s) for s in range(60)] == [second.factor(s) for s in range(60)]
    now = second.factor(60)
    assert [third.factor(s) for s in range(60, 80)] == pytest.approx([now * (80 - s) / 20 for s in range(60, 80)])
    assert third.factor(80) == 0.0


def test_a_checkpoint_without_a_plan_keeps_the_old_behaviour():
    s = Schedule(60, 0.1)
    assert s.resume(None, 50, 60, 1.0) is None
    assert [s.factor(i) for i in range(60)] == [recipe(i, 60, 0.1) for i in range(60)]
