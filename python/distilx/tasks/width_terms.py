"""The loss terms that bridge widths, beside `distillation_loss`, for every task alike.

- `alpha_relation`: MiniLMv2's self-attention relations (`distilx.relation_distillation_loss`) between the
  teacher's Q, K, V projections at `relation_teacher_layer` (default: the last) and the student's last
  layer's, re-split into `relation_heads` relation heads (default: the teacher's attention heads), padding
  excluded. The projections come from the adapter table (`models/attention_access.py`).
- `alpha_hidden`: the last hidden states of every real token through a learned linear projection
  W h_s + b (student width -> teacher width), compared with the teacher's by `hidden_loss`: "mse" (mean
  over tokens and the teacher's units of the squared difference, TinyBERT's) or "cosine" (mean over
  tokens of 1 - cos).

`WidthBridge` wraps the task's student-forward module (`Task.student_forward`, the module DDP wraps) and
adds those terms to what it returns. It reads both models through forward hooks — the base model's output
(last hidden states and the attention mask it was given) and the chosen layer's Q/K/V — so a task needs no
code for them: whatever runs the teacher, then the student's forward, is served. The projection is a
parameter of the bridge, so DDP, the optimizer and checkpoints carry it; it is not part of the student and
never reaches the student's Hugging Face folder.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..models.attention_access import AttentionTap
from ..models.shapes import shape_of

__all__ = ["StepLoss", "WidthBridge", "hidden_projection_loss", "logged_terms"]


class StepLoss(NamedTuple):
    """One micro-batch's loss: the weighted total (differentiable) and each term, unweighted, detached."""

    loss: torch.Tensor
    kl: torch.Tensor
    mlm: torch.Tensor  # the gold-label cross-entropy (logged under the task's gold_term)
    cos: torch.Tensor
    rel: torch.Tensor  # relation KL (qq + kk + vv)
    hid: torch.Tensor  # the projected hidden-state term


def logged_terms(config, gold_term: str) -> list[tuple[int, str]]:
    """(index into StepLoss, metric name) of the terms a run logs: the width terms only when they are on, so
    runs without them log what they always did."""
    names = [(0, "loss"), (1, "kl"), (2, gold_term), (3, "cos")]
    return names + [(4, "rel")] * (config.alpha_relation > 0) + [(5, "hid")] * (config.alpha_hidden > 0)


def hidden_projection_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, projection: nn.Module,
                           kind: str) -> torch.Tensor:
    """The projected hidden-state term over rows [n, H_s] / [n, H_t] (0 for no rows): "mse", the mean over
    rows and units of (W h_s + b - h_t)^2, or "cosine", the mean over rows of 1 - cos(W h_s + b, h_t)."""
    projected = projection(student_hidden)
    dtype = torch.promote_types(projected.dtype, torch.float32)  # bf16 under autocast: the term in fp32
    projected, target = projected.to(dtype), teacher_hidden.detach().to(dtype)
    if projected.shape[0] == 0:
        return projected.sum() * 0.0
    if kind == "mse":
        return F.mse_loss(projected, target)
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(projected, target, dim=-1, eps=1e-8)).mean()
    raise ValueError(f"hidden_loss={kind!r}; choose 'mse' or 'cosine'")


class _HiddenTap:
    """The last hidden states and the attention mask of a model's latest base-model forward."""

    def __init__(self, model: nn.Module):
        self.hidden = self.mask = None
        self._handle = model.base_model.register_forward_hook(self._keep, with_kwargs=True)

    def _keep(self, module, args, kwargs, output):
        if len(args) > 1:  # the mask would be positional: refuse rather than take padding for text
            raise RuntimeError(f"{type(module).__name__} was called with {len(args)} positional inputs; distilx reads "
                               "its attention_mask as a keyword")
        self.hidden, self.mask = output[0], kwargs.get("attention_mask")

    def rows(self) -> torch.Tensor:
        """The real tokens' hidden states [n, H]."""
        if self.hidden is None:
            raise RuntimeError("the model's encoder did not run in this step")
        if self.mask is None:
            return self.hidden.reshape(-1, self.hidden.shape[-1])
        return self.hidden[self.mask.bool()]

    def remove(self) -> None:
        self._handle.remove()


def _attention_width(model: nn.Module) -> int:
    shape = shape_of(model.config)
    return shape.heads * shape.head_dim


class WidthBridge(nn.Module):
    """`forward` (the task's student-forward module) plus the width terms; returns a StepLoss. Checks the
    terms' settings against both models at construction, i.e. before the first step."""

    def __init__(self, forward: nn.Module, config, teacher: nn.Module, student: nn.Module):
        super().__init__()
        self.inner = forward
        self.alpha_relation, self.alpha_hidden = config.alpha_relation, config.alpha_hidden
        self.hidden_loss, self.backend = config.hidden_loss, config.loss_backend
        self.projection = (nn.Linear(student.config.hidden_size, teacher.config.hidden_size)
                           if self.alpha_hidden > 0 else None)
        self._taps: list = []
        if self.alpha_relation > 0:
            layer = -1 if config.relation_teacher_layer is None else config.relation_teacher_layer
            try:
                self._teacher_qkv = self._tap(AttentionTap(teacher, layer))
            except ValueError as exc:
                raise ValueError(f"--relation-teacher-layer / the teacher: {exc}") from None
            self._student_qkv = self._tap(AttentionTap(student, -1))
            self.relation_heads = config.relation_heads or shape_of(teacher.config).heads
            widths = {"teacher": _attention_width(teacher), "student": _attention_width(student)}
            bad = {side: w for side, w in widths.items() if w % self.relation_heads}
            if bad:
                raise ValueError(f"relation_heads={self.relation_heads} must divide both models' attention widths (the "
                                 f"teacher's {widths['teacher']}, the student's {widths['student']}): set --relation-heads "
                                 "to a common divisor, e.g. the student's attention heads")
        if self.alpha_relation > 0 or self.alpha_hidden > 0:
            self._student_hidden = self._tap(_HiddenTap(student))
            self._teacher_hidden = self._tap(_HiddenTap(teacher))

    def _tap(self, tap):
        self._taps.append(tap)
        return tap

    def forward(self, *args, **kwargs) -> StepLoss:
        out = self.inner(*args, **kwargs)
        zero = torch.zeros((), dtype=torch.float32, device=out.loss.device)
        total, rel, hid = out.loss, zero, zero
        if self.alpha_relation > 0:
            from ..losses import relation_distillation_loss

            relation = relation_distillation_loss(*self._student_qkv.qkv(), *self._teacher_qkv.qkv(),
                                                  self._student_hidden.mask, relation_heads=self.relation_heads,
                                                  backend=self.backend)
            total, rel = total + self.alpha_relation * relation.loss, relation.loss.detach()
        if self.alpha_hidden > 0:
            term = hidden_projection_loss(self._student_hidden.rows(), self._teacher_hidden.rows(), self.projection,
                                          self.hidden_loss)
            total, hid = total + self.alpha_hidden * term, term.detach()
        for tap in self._taps:  # the next micro-batch starts empty: a model that did not run is an error, not stale
            if isinstance(tap, AttentionTap):
                tap.reset()
        return StepLoss(total, out.kl, out.mlm, out.cos, rel, hid)

    def projection_state(self) -> dict:
        """The learned projection's tensors (checkpoints), {} without one."""
        return {} if self.projection is None else self.projection.state_dict()

    def load_projection_state(self, state: dict) -> None:
        if self.projection is not None:
            self.projection.load_state_dict(state, strict=True)

    def remove_hooks(self) -> None:
        """Take the hooks off both models (the evaluation and the saved student run without them)."""
        for tap in self._taps:
            tap.remove()
        self._taps = []
