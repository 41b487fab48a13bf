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

`distilx finetune` (finetune.py) asks a task with a head of its own for `finetune_model`: the model it
fine-tunes (the encoder folder's weights, a fresh head), then runs the same loop with the gold-label
loss alone and evaluates the result with `evaluate_one` / `table_one`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod

import torch
from torch import nn

from ..models.shapes import ShapeRequest, requested_layers, shaped_student
from ..preflight import check_positions
from ..report import Measure, one_model, plural

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

_FACTS = ("teacher_params", "teacher_layers", "teacher_forward_s")  # report.model_facts' fields


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

    # --- fine-tuning a teacher (`distilx finetune`) ---
    def finetune_model(self, encoder_path: str, config) -> nn.Module:
        """A model of this task's head class on the encoder folder's weights, head freshly initialised,
        labels from config / the train files where the task has labels. Tasks without a head of their own
        to fit (masked-lm: a pre-trained encoder already is its teacher) keep this refusal."""
        raise ValueError(f"task {self.name} cannot fine-tune a teacher: it has no head to fit; distilx finetune "
                         "takes a task with one (e.g. --task sequence-classification)")

    def evaluate_one(self, model: nn.Module, config, tokenizer, device) -> dict:
        """One model's metrics on config.eval_files (after `distilx finetune`): evaluate() with the model on
        both sides; its `teacher_*` entries are the model's. Tasks may override it to run the model once."""
        return self.evaluate(model, model, config, tokenizer, device)

    # report.Measure rows of this task's tables (report.py: the shape every task's metrics share)
    measures: tuple = ()

    def table_one(self, metrics: dict) -> str:
        """evaluate_one()'s result as a one-model table: the rows of `measures`, or without them every
        numeric `teacher_<key>` entry."""
        measures = [x for x in self.measures if f"teacher_{x.key}" in metrics]  # those of its problem type
        measures = measures or [Measure(k.removeprefix("teacher_"), k.removeprefix("teacher_"), ".4g")
                                for k, v in metrics.items() if k.startswith("teacher_")
                                and isinstance(v, (int, float)) and k not in _FACTS]
        count = next((plural(metrics[k], noun) for k, noun in (("examples", "example"), ("targets", "target"))
                      if k in metrics), "held-out data")
        return one_model(metrics, measures, what=count)
