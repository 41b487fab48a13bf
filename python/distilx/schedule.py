"""The learning-rate schedule: linear warmup, then linear decay to 0 — and what a resume with another
length does to it.

A run plans its schedule for `total_steps` (max_steps, or `epochs` passes over the corpus): warmup over
`warmup_ratio` of the steps, then linear decay to 0 at the last step (the recipe, docs/recipe.md). A
resume may change the length (a larger `--max-steps`, other `--epochs`, another number of processes
in an epoch-counted run). Rebuilding the plan for the new length would make the rate jump at the
resume step (from 2.1e-4 to 3.7e-4, or from 0.0 at the end of a finished run); instead:

- resumed before the planned end (step s < old total): the rest of the plan is stretched (or squeezed)
  over steps s .. new total. The rate at step s is the one the run had; it then falls linearly, as
  planned, and reaches 0 at the new last step (an unfinished warmup is stretched with it);
- resumed at or after the planned end (the rate had reached 0: a finished run trained longer): the added
  steps run a new cycle of their own — warmup over `warmup_ratio` of them up to `lr`, then linear decay
  to 0 at the new last step.

The plan is a list of pieces, each mapping its steps onto a stretch of a base plan (total, warmup); it is
stored in each checkpoint, so a resume knows the length the run was planned for. An unchanged resume
keeps the one piece and its exact rates (bit-exact continuation).
"""

from __future__ import annotations

import math

import torch

__all__ = ["Schedule"]


def _warmup_steps(total: int, ratio: float) -> int:
    return max(1, int(math.ceil(total * ratio))) if ratio > 0 else 0


def _base_factor(u: float, total: int, warmup: int) -> float:
    """The recipe's factor at (possibly fractional) step u of a plan of `total` steps, `warmup` of them warmup."""
    if u < warmup:
        return min(1.0, (u + 1) / warmup)  # (a stretched warmup's fractional steps would pass 1)
    return max(0.0, (total - u) / max(1, total - warmup))


class Schedule:
    """Linear warmup then linear decay to 0, re-planned (not rebuilt) when a resume changes the length.

    `lambda_lr(optimizer)` gives the torch scheduler that applies it; `state_dict` / `resume` carry the
    plan through checkpoints."""

    def __init__(self, total_steps: int, warmup_ratio: float):
        self.warmup_ratio = warmup_ratio
        warmup = _warmup_steps(total_steps, warmup_ratio)
        # pieces: [start, end, source start, source end, plan total, plan warmup]
        self.pieces: list[list[float]] = [[0, total_steps, 0, total_steps, total_steps, warmup]]

    @property
    def total_steps(self) -> int:
        return int(self.pieces[-1][1])

    def factor(self, step: int) -> float:
        """The multiple of the peak lr at optimizer step `step` (0-based): from the last piece started by then."""
        piece = next((p for p in reversed(self.pieces) if p[0] <= step), None)
        if piece is None or step >= piece[1]:
            return 0.0
        start, end, src_start, src_end, total, warmup = piece
        return _base_factor(self._source(piece, step), int(total), int(warmup))

    @staticmethod
    def _source(piece, step: int) -> float:
        """The step of the piece's base plan that `step` maps to."""
        start, end, src_start, src_end = piece[:4]
        if (start, end) == (src_start, src_end):
            return step  # the plan as made: no arithmetic, exact rates
        return src_start + (step - start) * (src_end - src_start) / (end - start)

    def lambda_lr(self, optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: self.factor(step))  # a function: not pickled

    def sync(self, scheduler) -> None:
        """Set the optimizer's rates to this plan's at the scheduler's step (after `resume` re-planned)."""
        rates = [base * self.factor(scheduler.last_epoch) for base in scheduler.base_lrs]
        for group, rate in zip(scheduler.optimizer.param_groups, rates):
            group["lr"] = rate
        scheduler._last_lr = rates

    def state_dict(self) -> dict:
        return {"pieces": [list(p) for p in self.pieces]}

    def resume(self, state: dict | None, step: int, total_steps: int, lr: float) -> str | None:
        """Continue the plan saved in `state` (None: a checkpoint without one, planned for `total_steps`)
        at `step`, now for `total_steps` in all; returns one line saying what a changed length does to
        the rates, or None when the length is the planned one."""
        if state is None:
            return None
        self.pieces = [list(p) for p in state["pieces"]]
        planned = self.total_steps
        if total_steps == planned or step >= total_steps:
            return None
        if step < planned:
            last = next(p for p in reversed(self.pieces) if p[0] <= step)
            # the rest of the current piece's plan, from where the run stands, over the steps left
            self.pieces.append([step, total_steps, self._source(last, step), last[3], last[4], last[5]])
            return (f"the run was planned for {planned} steps, now {total_steps}: the learning rate continues from "
                    f"its value at step {step} ({lr * self.factor(step):.3g}) and decays linearly to 0 at step "
                    f"{total_steps} (the rest of the schedule is {'stretched' if total_steps > planned else 'squeezed'})")
        added = total_steps - step
        warmup = _warmup_steps(added, self.warmup_ratio)
        self.pieces.append([step, total_steps, 0, added, added, warmup])
        return (f"the run's schedule ended at step {planned} (learning rate 0); steps {step + 1}-{total_steps} run a "
                f"new cycle: warmup over {warmup} step{'s' if warmup != 1 else ''} to {lr:.3g}, then linear decay to 0")
