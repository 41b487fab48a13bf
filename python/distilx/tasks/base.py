"""The interface between the training loop and a task, and the parts every task shares.

The loop (training.py) asks a task for: the teacher (`load_teacher`), the student (`build_student`:
initialised from the teacher, randomly, or a pre-trained folder), checks before the first step
(`check_models`, `check_eval_input`), the resumable data source (`make_stream`: iterating yields one
epoch from the current position; `state_dict` / `load_state_dict`; `batches_per_epoch`; `files`; and, so
that a resume on another number of processes can deal out the rest of an epoch, `for_shard`,
`position_of`, `set_epoch`, `last_origin`: distilx.resharding — ClassificationBatches has them), the
module DDP wraps (`student_forward`: the student's forward and the loss, so that DDP sees every
parameter the loss uses), one micro-batch's loss (`loss`: the teacher's side under no_grad, then that
module), and the end-of-run evaluation (`evaluate`, printed with `table`). The loss is always
`distillation_loss` (or its fused-linear form for large vocabularies); the width-bridging terms
(attention relations, a learned hidden-state projection) are added around `student_forward` for every
task alike (`width_terms.py`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod

import torch
from torch import nn

from ..models.shapes import ShapeRequest, requested_layers, shaped_student
from ..preflight import check_positions

__all__ = ["Task", "check_widths"]


def check_widths(alpha_cos: float, teacher: nn.Module, student: nn.Module) -> None:
    """The cosine term (alpha_cos > 0) compares hidden states: both models must be as wide (the training loop
    and DistillationTrainer check it before the first step)."""
    widths = teacher.config.hidden_size, student.config.hidden_size
    if alpha_cos > 0 and widths[0] != widths[1]:
        raise ValueError(f"alpha_cos={alpha_cos} compares hidden states, but the teacher's are {widths[0]} wide and "
                         f"the student's {widths[1]}: use a student of the teacher's width or set --alpha-cos 0 "
                         "(alpha_cos=0); across widths, distilx train's --alpha-hidden compares them through a learned "
                         "projection")


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
        """config.student if set; else init_student (the teacher's width, its kept layers copied) given the
        requested shape (student_hidden / _heads / _intermediate or student_config) by student_init: 'teacher'
        (that width only), 'random' (fresh weights, seeded by config.seed: the ablation baseline) or
        'weight-selection' (a sub-network of the teacher; models/shapes.py). Any head: the shape machinery
        reads the model's state dict, not the task."""
        if config.student:
            return self.load_student(config.student, teacher)
        request = ShapeRequest.of(config)
        layers = requested_layers(request)  # a --student-config file's layer count
        if layers is not None and config.student_layers is None and config.student_layer_indices is None:
            config = dataclasses.replace(config, student_layers=layers)
        student = self.init_student(teacher, config)
        return shaped_student(student, request, init=config.student_init, selection=config.student_selection,
                              seed=config.seed)

    def check_models(self, config, teacher: nn.Module, student: nn.Module) -> None:
        """Before the first step: seq_len fits both models' positions; the cosine term has equal widths (the
        width-bridging terms check themselves: tasks/width_terms.py)."""
        check_positions(config.seq_len, teacher=teacher, student=student)
        check_widths(config.alpha_cos, teacher, student)

    def finetune_model(self, encoder_path: str, config) -> nn.Module:
        """A model of this task's head class on the encoder folder's weights, its head freshly initialised
        (labels from config / the train files where the task has labels): what `distilx finetune` trains."""
        raise ValueError(f"task {self.name} cannot fine-tune a model from an encoder folder")

    # --- data ---
    @abstractmethod
    def make_stream(self, config, tokenizer, env, teacher: nn.Module):
        """This rank's resumable batches of config.train_files (bad input is an error here, before any step)."""

    @abstractmethod
    def check_eval_input(self, config, tokenizer, teacher: nn.Module) -> None:
        """Raise unless config.eval_files can be evaluated (no-op without an evaluation)."""

    # --- one micro-batch ---
    @abstractmethod
    def student_forward(self, student: nn.Module, loss_options: dict, config) -> nn.Module:
        """An nn.Module around the student whose forward returns the DistillationLossOutput (DDP wraps it);
        loss_options: distillation_loss's temperature, weights, kl_on and backend."""

    @abstractmethod
    def loss(self, teacher: nn.Module | None, forward: nn.Module, batch: dict, device: torch.device, config):
        """What `forward` returns for `batch` on `device`: run the teacher (its encoder once: the width terms
        read it through hooks), then `forward` (training.py passes student_forward's module inside a
        width_terms.WidthBridge, which returns a StepLoss). teacher None: no loss term reads it, so it is
        not run."""

    # --- evaluation ---
    @abstractmethod
    def evaluate(self, teacher: nn.Module, student: nn.Module, config, tokenizer, device) -> dict:
        """Teacher and student metrics on config.eval_files."""

    @abstractmethod
    def table(self, metrics: dict) -> str:
        """evaluate()'s result as the side-by-side table `distilx train` prints."""

    # --- a way to a fine-tuned teacher (`distilx finetune`) ---
    def finetune_model(self, encoder_path: str, config) -> nn.Module:
        """A model of this task's head class on the encoder folder's weights, head freshly initialised,
        labels from config/train files where the task has labels."""
        raise ValueError(f"task {self.name} cannot fine-tune a teacher: distilx finetune serves the tasks that "
                         "implement Task.finetune_model")
