"""`DistillationTrainer`: distillation inside a `transformers.Trainer`, for code built on Trainer.

    trainer = DistillationTrainer(model=student, teacher=teacher, args=TrainingArguments(...),
                                  train_dataset=train, data_collator=collator,
                                  temperature=2.0, alpha_kl=5.0, alpha_mlm=2.0, alpha_cos=1.0)
    trainer.train()

Everything else is the Trainer's (optimizer, schedule, logging, checkpoints, accelerate/DDP). The
teacher is frozen (no parameter requires a gradient), stays in eval mode, runs under no_grad, and is
moved to the student's device before each step. The loss is `distillation_loss` on the logits both
models give for the batch:

- masked-LM heads: logits [B, L, V], labels [B, L] (-100 off target, as DataCollatorForLanguageModeling
  makes them); the KL over every real token (kl_on="tokens") or the targets only, the cross-entropy on
  the targets;
- sequence-classification heads: logits [B, C], labels [B]; one row per example;
- question-answering heads: start and end logits [B, L], `start_positions` / `end_positions` [B]; two rows
  per window (its start and its end logits over its real positions), as `--task question-answering` does.

The cosine term (alpha_cos > 0) compares the last hidden states of every real token. Each model is given
the batch entries its forward takes (a DistilBERT student gets no token_type_ids). The loss is a mean over
the micro-batch, so the Trainer divides it by the gradient-accumulation steps.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer

from .losses import distillation_loss
from .losses.checks import check_options
from .losses.defaults import ALPHA_COS, ALPHA_KL, ALPHA_MLM, KL_ON, TEMPERATURE
from .models.classification import forward_inputs
from .models.question_answering import qa_inputs
from .tasks.question_answering import span_rows

__all__ = ["DistillationTrainer"]


class DistillationTrainer(Trainer):
    """A transformers.Trainer whose loss distils `teacher` into the trained `model` (docs/tasks.md)."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-micro-batch mean

    def __init__(self, *args, teacher: nn.Module, temperature: float = TEMPERATURE, alpha_kl: float = ALPHA_KL,
                 alpha_mlm: float = ALPHA_MLM, alpha_cos: float = ALPHA_COS, kl_on: str = KL_ON,
                 backend: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        temperature, alpha_kl, alpha_mlm, alpha_cos = check_options(temperature, alpha_kl, alpha_mlm, alpha_cos,
                                                                    kl_on, backend)
        self.loss_options = dict(temperature=temperature, alpha_kl=alpha_kl, alpha_mlm=alpha_mlm,
                                 alpha_cos=alpha_cos, kl_on=kl_on, backend=backend)
        self.teacher = teacher.eval().requires_grad_(False)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        student = self.accelerator.unwrap_model(model)
        device = next(student.parameters()).device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        self.teacher.eval()  # whatever was done to it since
        hidden = self.loss_options["alpha_cos"] > 0
        spans = "start_positions" in inputs  # a question-answering batch
        inputs_of = qa_inputs if spans else forward_inputs
        s_out = model(**inputs_of(student, inputs), output_hidden_states=hidden)
        with torch.no_grad():
            t_out = self.teacher(**inputs_of(self.teacher, inputs), output_hidden_states=hidden)
        mask = inputs.get("attention_mask")
        s_hidden = t_hidden = None
        if hidden:
            real = mask.bool() if mask is not None else torch.ones(inputs["input_ids"].shape, dtype=torch.bool,
                                                                    device=device)
            s_hidden, t_hidden = s_out.hidden_states[-1][real], t_out.hidden_states[-1][real]
        if spans:  # start and end rows of each window over its real positions (tasks/question_answering.py)
            real = mask if mask is not None else torch.ones_like(inputs["input_ids"])
            s_logits, t_logits = (span_rows(o.start_logits, o.end_logits, real) for o in (s_out, t_out))
            labels, row_mask = torch.cat([inputs["start_positions"], inputs["end_positions"]]), None
        else:  # token logits [B, L, V] select their real tokens by the attention mask; class logits are one row each
            s_logits, t_logits, labels = s_out.logits, t_out.logits, inputs["labels"]
            row_mask = mask if s_logits.dim() == 3 else None
        out = distillation_loss(s_logits, t_logits, labels, row_mask, s_hidden, t_hidden, **self.loss_options)
        return (out.loss, s_out) if return_outputs else out.loss
