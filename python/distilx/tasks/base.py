"""The interface between the training loop and a task, and the parts every task shares.

The loop (training.py) asks a task for: the teacher (`load_teacher`), the student (`build_student`:
initialised from the teacher, randomly, or a pre-trained folder), checks before the first step
(`check_models`, `check_eval_input`), the resumable data source (`make_stream`: iterating yields one
epoch from the current position; `state_dict` / `load_state_dict`; `batches_per_epoch`; `files`), the
module DDP wraps (`student_forward`), the rows the loss reads (`loss_inputs`), and the end-of-run
evaluation (`evaluate`, printed with `table`). The loss itself is always `distillation_loss`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
from torch import nn

from ..preflight import check_positions

__all__ = ["LossInputs", "Task"]


class LossInputs(NamedTuple):
    """What `distillation_loss` reads for one micro-batch (its attention_mask is not needed: every row is real)."""

    student_logits: torch.Tensor  # [N, V] (masked-LM rows) or [N, C] (one row per example)
    teacher_logits: torch.Tensor  # the same shape; the student's own, detached, when the teacher is not run
    labels: torch.Tensor  # [N] gold ids, -100 = no target
    student_hidden: torch.Tensor | None  # [M, H] last hidden states of the real tokens, or None (no cosine)
    teacher_hidden: torch.Tensor | None


class Task(ABC):
    """One kind of distillation; a subclass implements the abstract methods."""

    name: str
    gold_term: str  # the metric name of the cross-entropy on the gold labels ("mlm", "ce")

    # --- models ---
    @abstractmethod
    def load_teacher(self, path) -> nn.Module:
        """The teacher folder's model, in eval mode."""

    @abstractmethod
    def init_student(self, teacher: nn.Module, config) -> nn.Module:
        """A student initialised from the teacher's kept layers (config.student_layers / _indices)."""

    @abstractmethod
    def load_student(self, path, teacher: nn.Module) -> nn.Module:
        """A pre-trained student folder (config.student), ready for this task."""

    def build_student(self, teacher: nn.Module, config) -> nn.Module:
        """config.student if set, else initialised from the teacher; student_init='random' keeps the shape
        and draws fresh weights (the ablation baseline), seeded by config.seed."""
        if config.student:
            return self.load_student(config.student, teacher)
        student = self.init_student(teacher, config)
        if config.student_init == "random":
            torch.manual_seed(config.seed)
            student = type(student)(student.config)
        return student

    def check_models(self, config, teacher: nn.Module, student: nn.Module) -> None:
        """Before the first step: seq_len fits both models' positions; the cosine term has equal widths."""
        check_positions(config.seq_len, teacher=teacher, student=student)
        widths = teacher.config.hidden_size, student.config.hidden_size
        if config.alpha_cos > 0 and widths[0] != widths[1]:
            raise ValueError(f"alpha_cos={config.alpha_cos} compares hidden states, but the teacher's are {widths[0]} "
                             f"wide and the student's {widths[1]}: use a student of the teacher's width or set "
                             "--alpha-cos 0")

    # --- data ---
    @abstractmethod
    def make_stream(self, config, tokenizer, env, teacher: nn.Module):
        """This rank's resumable batches of config.train_files (bad input is an error here, before any step)."""

    @abstractmethod
    def check_eval_input(self, config, tokenizer, teacher: nn.Module) -> None:
        """Raise unless config.eval_files can be evaluated (no-op without an evaluation)."""

    # --- one micro-batch ---
    @abstractmethod
    def student_forward(self, student: nn.Module) -> nn.Module:
        """An nn.Module around the student whose forward gives what loss_inputs reads (DDP wraps it)."""

    @abstractmethod
    def loss_inputs(self, teacher: nn.Module | None, forward: nn.Module, batch: dict, device: torch.device,
                    config) -> LossInputs:
        """Teacher and student outputs of `batch` on `device`. teacher None: no loss term reads it
        (alpha_kl = alpha_cos = 0), so it is not run."""

    # --- evaluation ---
    @abstractmethod
    def evaluate(self, teacher: nn.Module, student: nn.Module, config, tokenizer, device) -> dict:
        """Teacher and student metrics on config.eval_files."""

    @abstractmethod
    def table(self, metrics: dict) -> str:
        """evaluate()'s result as the side-by-side table `distilx train` prints."""
