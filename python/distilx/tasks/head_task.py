"""What every fine-tuned-head task shares (sequence classification, token classification): the teacher
and student of one head family (models/heads.py), labelled examples in resumable batches
(labelled_data.py), and the loss of the head's logits (losses/heads.py: chosen by what they mean).

A subclass names its `kind` (HeadKind), its model check (`check`), how its files become examples
(`examples`), and its evaluation (`evaluate`, `table`).
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import nn

from ..models.classification import forward_inputs
from ..models.heads import HeadKind, head_problem
from .base import Task
from .labelled_data import ClassificationBatches, LabelSet

__all__ = ["HeadForward", "HeadTask", "logits_and_hidden"]


def logits_and_hidden(model: nn.Module, batch: dict, hidden: bool):
    """`model`'s logits of `batch`, and (hidden=True) the last hidden states of its real tokens [n, H]."""
    out = model(**forward_inputs(model, batch), output_hidden_states=hidden)
    return out.logits, (out.hidden_states[-1][batch["attention_mask"].bool()] if hidden else None)


class HeadForward(nn.Module):
    """Student forward and the loss for one batch: the head's logits (class logits [B, C], or [B, L, C] per
    token) and, when the cosine term is on, the last hidden states of the real tokens; the loss by what the
    logits mean (`head_distillation_loss`). The loss is computed inside forward, as for masked-LM, so that
    DDP (which wraps this module) sees it. teacher None (no term reads it): the student's own outputs,
    detached, stand in for it."""

    def __init__(self, model: nn.Module, loss_options: dict):
        super().__init__()
        self.model = model
        self.loss_options = loss_options
        self.problem = head_problem(model)

    def forward(self, batch: dict, teacher: tuple[torch.Tensor, torch.Tensor | None] | None):
        from ..losses import head_distillation_loss

        s_logits, s_hidden = logits_and_hidden(self.model, batch, hidden=teacher is not None and teacher[1] is not None)
        t_logits, t_hidden = (s_logits.detach(), None) if teacher is None else teacher
        return head_distillation_loss(self.problem, s_logits, t_logits, batch["labels"], batch["attention_mask"],
                                      s_hidden, t_hidden, **self.loss_options)


class HeadTask(Task):
    """A Task whose teacher is a fine-tuned model of one head family and whose data are labelled files."""

    kind: HeadKind
    gold_term = "ce"

    @abstractmethod
    def check(self, model: nn.Module, role: str = "teacher") -> None:
        """Raise unless `model` is a head model this task distils."""

    @abstractmethod
    def examples(self, files, config, labels: LabelSet):
        """The labelled examples of `files` (a LabelledExamples: __len__, batch, in_order, files, seq_len)."""

    def load_teacher(self, path) -> nn.Module:
        return self.kind.load(path, self.check)

    def init_student(self, teacher, config) -> nn.Module:
        self.check(teacher)
        return self.kind.init_student(teacher, n_layers=config.student_layers, layers=config.student_layer_indices)

    def load_student(self, path, teacher) -> nn.Module:
        return self.kind.pretrained_student(path, teacher, lambda model: self.check(model, role="student"))

    def check_models(self, config, teacher, student) -> None:
        super().check_models(config, teacher, student)
        self.check(student, role="student")
        LabelSet.shared(teacher, student)

    def make_stream(self, config, tokenizer, env, teacher):
        examples = self.examples(config.train_files, config, LabelSet.of(teacher.config))
        return ClassificationBatches(examples, batch_size=config.batch_size, seed=config.seed, rank=env.rank,
                                     world_size=env.world_size, padding=config.padding)

    def check_eval_input(self, config, tokenizer, teacher) -> None:
        if not config.eval_files or config.eval_batches == 0:
            return
        try:
            examples = self.examples(config.eval_files, config, LabelSet.of(teacher.config))
        except (ValueError, FileNotFoundError) as exc:
            raise type(exc)(f"--eval-files: {exc}") from None
        if len(examples) == 0:
            raise ValueError(f"eval_files {list(config.eval_files)} hold no labelled example for the end-of-run "
                             "evaluation: add examples, or pass --eval-batches 0 to skip the evaluation")

    def student_forward(self, student, loss_options, config) -> nn.Module:
        return HeadForward(student, loss_options)

    def loss(self, teacher, forward, batch, device, config):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        side = None
        if teacher is not None:
            with torch.no_grad():
                side = logits_and_hidden(teacher, batch, hidden=config.alpha_cos > 0)
        return forward(batch, side)
