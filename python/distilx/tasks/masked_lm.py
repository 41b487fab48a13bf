"""Pre-training distillation: a masked-LM teacher, raw text, DistilBERT's triple loss (docs/recipe.md).

Masking, padding and batching belong to the Rust engine (`MaskedLMStream`); the MLM head is projected
only onto the rows the KL and MLM terms read (kl_on="targets": the masked positions), the cosine runs
over every real token's last hidden state.
"""

from __future__ import annotations

import torch
from torch import nn

from ..losses import IGNORE_INDEX
from ..models import adapter_for, init_student, load_teacher
from ..preflight import check_eval_input
from ..report import metrics_table
from .base import LossInputs, Task

__all__ = ["MaskedLMDistiller", "MaskedLMTask", "TASK", "masked_lm_stream", "teacher_outputs"]


class MaskedLMDistiller(nn.Module):
    """Student forward for one batch: logits of the rows the loss reads, hidden states of every real token.

    Projecting only the loss rows onto the vocabulary is where the CPU time goes (kl_on="targets"
    reads ~15% of the tokens); the cosine term stays on every real token, as in DistilBERT (hidden
    states are cheap). It is an nn.Module so that DDP wraps it and its forward triggers DDP's
    gradient synchronisation.
    """

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student
        self.adapter = adapter_for(student)

    def forward(self, input_ids, attention_mask, logit_rows):
        return _logits_and_hidden(self.adapter, self.student, input_ids, attention_mask, logit_rows)


def _logits_and_hidden(adapter, model: nn.Module, input_ids, attention_mask, logit_rows):
    """(MLM logits of `logit_rows` [n_rows, V], last hidden states of the real tokens [n_real, H])."""
    hidden = adapter.last_hidden(model, input_ids, attention_mask)
    return adapter.mlm_logits(model, hidden[logit_rows]), hidden[attention_mask.bool()]


def masked_lm_stream(config, tokenizer, env):
    """This rank's MaskedLMStream of config.train_files, with the run's stream options."""
    from ..data import MaskedLMStream

    return MaskedLMStream(list(config.train_files), tokenizer, **config.stream_options(env.rank, env.world_size))


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, input_ids, attention_mask, logit_rows):
    return _logits_and_hidden(adapter_for(teacher), teacher, input_ids, attention_mask, logit_rows)


class MaskedLMTask(Task):
    name = "masked-lm"
    gold_term = "mlm"

    def load_teacher(self, path) -> nn.Module:
        return load_teacher(path)

    def init_student(self, teacher, config) -> nn.Module:
        return init_student(teacher, n_layers=config.student_layers, layers=config.student_layer_indices)

    def load_student(self, path, teacher) -> nn.Module:
        """A masked-LM student folder (e.g. an earlier run's output) to distil further."""
        return load_teacher(path).train()

    def make_stream(self, config, tokenizer, env, teacher):
        return masked_lm_stream(config, tokenizer, env)

    def check_eval_input(self, config, tokenizer, teacher) -> None:
        check_eval_input(config, tokenizer)

    def student_forward(self, student) -> nn.Module:
        return MaskedLMDistiller(student)

    def loss_inputs(self, teacher, forward, batch, device, config) -> LossInputs:
        attention_mask, labels = batch["attention_mask"], batch["labels"]
        # the vocabulary projection runs on the rows the KL and MLM terms read; the cosine on every real token
        rows = (labels != IGNORE_INDEX) if config.kl_on == "targets" else attention_mask.bool()
        input_ids = batch["input_ids"].to(device, non_blocking=True)
        attention_mask = attention_mask.to(device, non_blocking=True)
        rows = rows.to(device, non_blocking=True)
        row_labels = labels.to(device, non_blocking=True)[rows]
        if teacher is None:
            s_logits, _ = forward(input_ids, attention_mask, rows)
            return LossInputs(s_logits, s_logits.detach(), row_labels, None, None)
        t_logits, t_hidden = teacher_outputs(teacher, input_ids, attention_mask, rows)
        s_logits, s_hidden = forward(input_ids, attention_mask, rows)
        return LossInputs(s_logits, t_logits, row_labels, s_hidden, t_hidden)

    def evaluate(self, teacher, student, config, tokenizer, device) -> dict:
        from ..evaluation import evaluate

        return evaluate(teacher, student, config.eval_files, tokenizer, seq_len=config.seq_len,
                        batch_size=config.batch_size, max_batches=config.eval_batches, seed=config.seed, device=device)

    def table(self, metrics: dict) -> str:
        return metrics_table(metrics)


TASK = MaskedLMTask()
