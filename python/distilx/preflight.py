"""Checks of what a run needs that the config alone cannot tell, done before its first step.

- `check_positions`: seq_len must fit the position table of the teacher and of the student, or
  the run dies on a tensor-size error at the first long batch. RoBERTa-style models number
  positions from padding_idx + 1, so their 514 rows hold 512 tokens (the adapter table knows);
  rotary-position models are held to the length they were built for.
- `check_eval_input`: the held-out files must give at least one batch, or the run trains for
  hours and then fails at the final evaluation.
- `training_batches`: if the corpus gives no batch, the engine's error names the flag.
- `check_output_outside_inputs`: the output folder is not inside a corpus folder (or under a glob) of
  train_files / eval_files, where the run's own files (metrics.jsonl, config.json, checkpoints) would
  be read as text, change the corpus and make every --resume refuse it.
Each error names the input that is wrong and the flag that fixes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from torch import nn

from .models.adapters import encoder_adapter

__all__ = ["usable_positions", "check_positions", "check_eval_input", "training_batches",
           "check_output_outside_inputs"]


def usable_positions(model: nn.Module) -> int:
    """The longest sequence `model` (any head) can embed: its position table minus the rows its architecture
    reserves (models/adapters.py); without a table (rotary or relative positions: ModernBERT, EuroBERT,
    DeBERTa without position_biased_input) the length it was built for, max_position_embeddings."""
    adapter = encoder_adapter(model)
    table = getattr(adapter.embeddings(model), "position_embeddings", None)
    if not isinstance(table, nn.Embedding):
        return model.config.max_position_embeddings
    return table.num_embeddings - adapter.reserved_positions(model)


def check_positions(seq_len: int, **models: nn.Module) -> None:
    """Raise if seq_len exceeds the positions of any of `models` (given by role: teacher=..., student=...)."""
    for role, model in models.items():
        limit = usable_positions(model)
        if seq_len > limit:
            reserved = encoder_adapter(model).reserved_positions(model)
            why = f" minus {reserved} reserved (padding_idx + 1)" if reserved else ""
            raise ValueError(f"seq_len={seq_len} is longer than the {role} can embed: {limit} positions "
                             f"(max_position_embeddings={limit + reserved}{why}); set --seq-len {limit} or less")


def check_eval_input(config, tokenizer) -> None:
    """Raise unless config.eval_files give at least one evaluation batch (no-op without evaluation)."""
    from .evaluation import eval_stream

    if not config.eval_files or config.eval_batches == 0:
        return
    try:
        stream = eval_stream(config.eval_files, tokenizer, seq_len=config.seq_len, batch_size=config.batch_size,
                             seed=config.seed)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"--eval-files: {exc}") from None
    if stream.count_batches() == 0:
        raise ValueError(f"eval_files {list(config.eval_files)} give no full batch of batch_size={config.batch_size} "
                         "sequences for the end-of-run evaluation: add held-out text, lower --batch-size, or pass "
                         "--eval-batches 0 to skip the evaluation")


def training_batches(batches: Iterator[dict], config) -> Iterator[dict]:
    """`batches`, lazily; if the first one cannot be drawn, the engine's error names --train-files."""
    try:
        first = next(batches)
    except ValueError as exc:
        raise ValueError(f"train_files {list(config.train_files)}: {exc}; add text or lower --batch-size "
                         f"(now {config.batch_size})") from None
    yield first
    yield from batches


_GLOB_CHARS = ("*", "?", "[")


def _walked_folder(entry: str) -> tuple[Path, int | None] | None:
    """(the folder a corpus entry walks, how many levels below it a file may lie: None for any) for a
    folder or a glob (the leading components without wildcards, as rust/corpus/discover.rs splits it);
    None for a single file."""
    if os.path.isdir(entry):
        return Path(entry), None
    if not any(c in entry for c in _GLOB_CHARS):
        return None
    parts = entry.split("/")
    literal = next(i for i, part in enumerate(parts) if any(c in part for c in _GLOB_CHARS))
    base = "/".join(parts[:literal]) or ("/" if entry.startswith("/") else ".")
    rest = parts[literal:]
    return Path(base), (None if "**" in "/".join(rest) else len(rest))


def check_output_outside_inputs(config) -> None:
    """Raise (before anything is created) if config.output_dir lies inside a folder that train_files or
    eval_files walk, at a depth their files may lie at: the run would read its own outputs as text."""
    output = Path(os.path.realpath(config.output_dir))
    for flag, entries in (("train_files", config.train_files), ("eval_files", config.eval_files)):
        for entry in entries:
            if not isinstance(entry, (str, os.PathLike)):
                continue
            walked = _walked_folder(os.fspath(entry))
            if walked is None:
                continue
            folder, depth = Path(os.path.realpath(walked[0])), walked[1]
            if output != folder and folder not in output.parents:
                continue
            below = len(output.relative_to(folder).parts)  # the run's files lie at below + 1 and deeper
            if depth is None or depth > below:
                raise ValueError(f"output_dir {config.output_dir} is inside {entry} ({flag}): the run's own files "
                                 "(metrics.jsonl, config.json, checkpoints) would be read as corpus text, and a "
                                 "--resume would find the corpus changed; put --output-dir outside it")
