"""`DistillationTrainer`: distillation inside a `transformers.Trainer`, for code built on Trainer.

    trainer = DistillationTrainer(model=student, teacher=teacher, args=TrainingArguments(...),
                                  train_dataset=train, data_collator=collator,
                                  temperature=2.0, alpha_kl=5.0, alpha_mlm=2.0, alpha_cos=1.0)
    trainer.train()

Everything else is the Trainer's (optimizer, schedule, logging, checkpoints, accelerate/DDP). The
teacher is frozen (no parameter requires a gradient), stays in eval mode, runs under no_grad, and is
moved to the student's device before each step. The loss is `distillation_loss` (or the head's own,
losses/heads.py) on the logits both models give for the batch:

- masked-LM heads: logits [B, L, V], labels [B, L] (-100 off target, as DataCollatorForLanguageModeling
  makes them); the KL over every real token (kl_on="tokens") or the targets only, the cross-entropy on
  the targets;
- sequence-classification heads: logits [B, C], labels [B]; one row per example; multi-label heads
  (float labels [B, C]: the per-label binary KL + BCE) and regression heads (float labels [B]: MSE to
  the teacher + to the gold) by their config's problem_type;
- token-classification heads: logits [B, L, C], labels [B, L] (-100 where no word starts, as
  DataCollatorForTokenClassification pads them); the KL and cross-entropy over the labelled positions.

The cosine term (alpha_cos > 0) compares the last hidden states of every real token. Each model is given
the batch entries its forward takes (a DistilBERT student gets no token_type_ids). The loss is a mean over
the micro-batch, so the Trainer divides it by the gradient-accumulation steps.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer

from .losses import head_distillation_loss
from .losses.checks import check_options
from .losses.defaults import ALPHA_COS, ALPHA_KL, ALPHA_MLM, KL_ON, TEMPERATURE
from .models.classification import forward_inputs
from .models.heads import head_problem

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
        s_out = model(**forward_inputs(student, inputs), output_hidden_states=hidden)
        with torch.no_grad():
            t_out = self.teacher(**forward_inputs(self.teacher, inputs), output_hidden_states=hidden)
        mask = inputs.get("attention_mask")
        s_hidden = t_hidden = None
        if hidden:
            real = mask.bool() if mask is not None else torch.ones(inputs["input_ids"].shape, dtype=torch.bool,
                                                                    device=device)
            s_hidden, t_hidden = s_out.hidden_states[-1][real], t_out.hidden_states[-1][real]
        # the loss of what the student's logits mean (losses/heads.py): masked-LM rows by the attention mask,
        # token-classification rows by their labels, multi-label and regression heads their own losses
        out = head_distillation_loss(head_problem(student), s_out.logits, t_out.logits, inputs["labels"], mask,
                                     s_hidden, t_hidden, **self.loss_options)
        return (out.loss, s_out) if return_outputs else out.loss
