"""Pre-training distillation: a masked-LM teacher, raw text, DistilBERT's triple loss (docs/recipe.md).

Masking, padding and batching belong to the Rust engine (`MaskedLMStream`); the MLM head is projected
only onto the rows the KL and MLM terms read (kl_on="targets": the masked positions), the cosine runs
over every real token's last hidden state.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import IGNORE_INDEX
from ..losses.defaults import ALPHA_COS
from ..models import adapter_for, init_student, load_teacher
from ..preflight import check_eval_input
from ..report import metrics_table
from .base import Task

__all__ = ["MaskedLMDistiller", "MaskedLMTask", "TASK", "TeacherSide", "masked_lm_stream", "teacher_side"]


class TeacherSide(NamedTuple):
    """What the loss needs from the frozen teacher for one batch (computed under no_grad)."""

    head_input: torch.Tensor  # [n_rows, H_t]: the MLM head's transform of the loss rows
    weight: torch.Tensor  # [V, H_t] vocabulary projection
    bias: torch.Tensor | None  # [V]
    hidden: torch.Tensor  # [n_real, H_t]: last hidden states of every real token (the cosine's rows)


@torch.no_grad()
def teacher_side(teacher: nn.Module, input_ids, attention_mask, logit_rows) -> TeacherSide:
    adapter = adapter_for(teacher)
    hidden = adapter.last_hidden(teacher, input_ids, attention_mask)
    weight, bias = adapter.decoder(teacher)
    return TeacherSide(adapter.head_transform(teacher, hidden[logit_rows]), weight, bias,
                       hidden[attention_mask.bool()])


class MaskedLMDistiller(nn.Module):
    """Student forward and the loss for one batch.

    The vocabulary projection runs only on the rows the KL and MLM terms read (kl_on="targets" reads
    ~15% of the tokens: that projection is where the CPU time goes); the cosine term stays on every real
    token, as in DistilBERT (hidden states are cheap). With `fused_linear` ("auto": when
    `fused_linear_pays`) the projections and the loss run chunk by chunk and the N x V logits are never
    held (large vocabularies). The loss is computed inside forward so that DDP, which wraps this module,
    sees every parameter the loss uses (the decoder weight included) in the graph of its output.
    teacher None (no term reads it): the student's own outputs, detached, stand in for it.
    """

    def __init__(self, student: nn.Module, loss_options: dict, fused_linear: str = "auto"):
        super().__init__()
        self.student = student
        self.adapter = adapter_for(student)
        self.loss_options = loss_options
        self.fused_linear = fused_linear

    def forward(self, input_ids, attention_mask, logit_rows, row_labels, teacher: TeacherSide | None):
        from ..losses import distillation_loss, fused_linear_distillation_loss

        hidden = self.adapter.last_hidden(self.student, input_ids, attention_mask)
        head_input = self.adapter.head_transform(self.student, hidden[logit_rows])
        real_hidden = hidden[attention_mask.bool()]
        weight, bias = self.adapter.decoder(self.student)
        if teacher is None:
            teacher = TeacherSide(head_input.detach(), weight.detach(), None if bias is None else bias.detach(),
                                  real_hidden.detach())
        # the cosine's rows only when it is on: a narrower student's hidden states have another width
        cosine = self.loss_options.get("alpha_cos", ALPHA_COS) > 0
        s_hidden, t_hidden = (real_hidden, teacher.hidden) if cosine else (None, None)
        if self._use_fused_linear(head_input, weight):
            return fused_linear_distillation_loss(
                head_input, weight, teacher.head_input, teacher.weight, row_labels, student_bias=bias,
                teacher_bias=teacher.bias, student_hidden=s_hidden, teacher_hidden=t_hidden, **self.loss_options)
        s_logits = F.linear(head_input, weight, bias)
        with torch.no_grad():
            t_logits = F.linear(teacher.head_input, teacher.weight, teacher.bias)
        return distillation_loss(s_logits, t_logits, row_labels, None, s_hidden, t_hidden, **self.loss_options)

    def _use_fused_linear(self, head_input: torch.Tensor, weight: torch.Tensor) -> bool:
        if self.fused_linear != "auto":
            return self.fused_linear == "on"
        from ..losses.fused_linear import fused_linear_pays

        device = head_input.device
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else weight.dtype
        return fused_linear_pays(head_input.shape[0], weight.shape[0], weight.shape[1], device=device,
                                 dtype=dtype, weight_dtype=weight.dtype)


def masked_lm_stream(config, tokenizer, env):
    """This rank's MaskedLMStream of config.train_files, with the run's stream options."""
    from ..data import MaskedLMStream

    return MaskedLMStream(list(config.train_files), tokenizer, **config.stream_options(env.rank, env.world_size))


class MaskedLMTask(Task):
    name = "masked-lm"
    gold_term = "mlm"

    def load_teacher(self, path) -> nn.Module:
        return load_teacher(path)

    def init_student(self, teacher, config) -> nn.Module:
        return init_student(teacher, n_layers=config.student_layers, layers=config.student_layer_indices,
                            student_class=config.student_class)

    def load_student(self, path, teacher) -> nn.Module:
        """A masked-LM student folder (e.g. an earlier run's output) to distil further."""
        return load_teacher(path).train()

    def make_stream(self, config, tokenizer, env, teacher):
        return masked_lm_stream(config, tokenizer, env)

    def check_eval_input(self, config, tokenizer, teacher) -> None:
        check_eval_input(config, tokenizer)

    def student_forward(self, student, loss_options, config) -> nn.Module:
        return MaskedLMDistiller(student, loss_options, config.fused_linear)

    def loss(self, teacher, forward, batch, device, config):
        attention_mask, labels = batch["attention_mask"], batch["labels"]
        # the vocabulary projection runs on the rows the KL and MLM terms read; the cosine on every real token
        rows = (labels != IGNORE_INDEX) if config.kl_on == "targets" else attention_mask.bool()
        input_ids = batch["input_ids"].to(device, non_blocking=True)
        attention_mask = attention_mask.to(device, non_blocking=True)
        rows = rows.to(device, non_blocking=True)
        row_labels = labels.to(device, non_blocking=True)[rows]
        side = None if teacher is None else teacher_side(teacher, input_ids, attention_mask, rows)
        return forward(input_ids, attention_mask, rows, row_labels, side)

    def evaluate(self, teacher, student, config, tokenizer, device) -> dict:
        from ..evaluation import evaluate

        return evaluate(teacher, student, config.eval_files, tokenizer, seq_len=config.seq_len,
                        batch_size=config.batch_size, max_batches=config.eval_batches, seed=config.seed, device=device)

    def table(self, metrics: dict) -> str:
        return metrics_table(metrics)


TASK = MaskedLMTask()
