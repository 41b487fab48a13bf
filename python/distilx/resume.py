"""What a resume restores from a checkpoint, and the configuration a resume from the folder alone runs.

`restore` puts a run back where a checkpoint left it: the student's weights (and the width terms' learned
projection), the optimizer, the grad scaler, the step counters, every rank's data position (on another
number of processes, through distilx.resharding), the RNGs, and the learning-rate schedule (re-planned
when the run's length changed: distilx.schedule). `folder_config` is what `distilx train --output-dir RUN --resume` runs:
RUN/train_config.json, with the flags given again checked against it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, restore_rng
from .distributed import DistEnv, run_on_main
from .resharding import batches_left, resume_stream
from .run_identity import RESUMABLE

__all__ = ["Restored", "restore", "folder_config", "CONFIG_FILE"]

CONFIG_FILE = "train_config.json"


@dataclass
class Restored:
    stream: object  # the stream to iterate (a resharding.Redistributed on another number of processes)
    step: int
    skipped: int
    tokens_seen: int
    total_steps: int
    notes: list[str]  # one line per thing that continues differently from the run that wrote the checkpoint


def restore(ckpt: Path, *, config, env: DistEnv, student, optimizer, scheduler, scaler, schedule, stream,
            total_steps: int, bridge=None) -> Restored:
    """Load checkpoint `ckpt` into the run's objects (every rank); see the module doc. bridge: the run's
    tasks/width_terms.WidthBridge, whose learned projection (alpha_hidden) the checkpoint also holds."""
    model_state, state = load_checkpoint(ckpt, map_location="cpu")
    student.load_state_dict(model_state)
    if bridge is not None:
        bridge.load_projection_state(state.get("projection", {}))
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    notes = []
    stream, note = resume_stream(stream, state["stream"], env.rank, env.world_size)
    notes += [note] if note else []
    rngs = state["rng"]
    if env.rank < len(rngs):
        restore_rng(rngs[env.rank])
    else:  # a process the checkpoint did not have: its own seeded RNGs (dropout), by rank and step
        torch.manual_seed(config.seed + 1_000_003 * env.rank + state["step"])
    step = state["step"]
    if config.max_steps is None:  # an epoch-counted run: what is left of its epochs, as positioned now
        total_steps = run_on_main(env, lambda: step + math.ceil(batches_left(stream, config.epochs)
                                                                 / config.grad_accum), share=True)
    note = schedule.resume(state.get("schedule"), step, total_steps, config.lr)
    scheduler.load_state_dict(state["scheduler"])
    if note:
        schedule.sync(scheduler)
        notes.append(note)
    return Restored(stream, step, state["skipped"], state["tokens_seen"], total_steps, notes)


def folder_config(output_dir: str | Path, given: dict):
    """The TrainConfig of the run in `output_dir` (its train_config.json) with the flags `given` (CLI text,
    by field name) applied: a field a resume may change (run_identity.RESUMABLE) takes the given value;
    any other given value must equal the saved one, or ValueError names every difference."""
    from .config import TrainConfig

    path = Path(output_dir) / CONFIG_FILE
    try:
        saved = TrainConfig.load(path)
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} cannot be read back ({exc}): pass the run's settings with --config") from None
    wanted = saved.override(given)  # the given text read as each field's type, then validated
    differences = [f"{name}: {getattr(saved, name)!r} in {path}, {getattr(wanted, name)!r} given"
                   for name in sorted(given) if name not in RESUMABLE and getattr(wanted, name) != getattr(saved, name)]
    if differences:
        raise ValueError(f"--resume continues the run in {output_dir} as {path} describes it, but the flags change "
                         f"what defines that run: {'; '.join(differences)}. Drop those flags to continue it, or start a "
                         "new run (another --output-dir, or --overwrite-output-dir)")
    return wanted.override({"output_dir": str(output_dir)})
