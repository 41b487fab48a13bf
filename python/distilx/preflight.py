"""Checks of what a run needs that the config alone cannot tell, done before its first step.

- `check_positions`: seq_len must fit the position table of the teacher and of the student, or
  the run dies on a tensor-size error at the first long batch. RoBERTa-style models number
  positions from padding_idx + 1, so their 514 rows hold 512 tokens (the adapter table knows);
  rotary-position models are held to the length they were built for.
- `check_eval_input`: the held-out files must give at least one batch, or the run trains for
  hours and then fails at the final evaluation.
- `training_batches`: if the corpus gives no batch, the engine's error names the flag.
Each error names the input that is wrong and the flag that fixes it.
"""

from __future__ import annotations

from typing import Iterator

from torch import nn

from .models.adapters import encoder_adapter

__all__ = ["usable_positions", "check_positions", "check_eval_input", "training_batches"]


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
