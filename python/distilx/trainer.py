"""`DistillationTrainer`: distillation inside a `transformers.Trainer`, for code built on Trainer.

    trainer = DistillationTrainer(model=student, teacher=teacher, args=TrainingArguments(...),
                                  train_dataset=train, data_collator=collator,
                                  temperature=2.0, alpha_kl=5.0, alpha_mlm=2.0, alpha_cos=1.0)
    trainer.train()

Everything else is the Trainer's (optimizer, schedule, logging, checkpoints, accelerate/DDP). Before
anything runs, the pair gets the checks `distilx train` makes (`check_pair`: head kinds, label sets,
widths, one vocabulary), each a one-line error naming the side at fault. The teacher is frozen (no
parameter requires a gradient), stays in eval mode, runs under no_grad, and is moved to the student's
device before each step. The loss is `distillation_loss` (or the head's own, losses/heads.py) on the
logits both models give for the batch:

- masked-LM heads: logits [B, L, V], labels [B, L] (-100 off target, as DataCollatorForLanguageModeling
  makes them); the KL over every real token (kl_on="tokens") or the targets only, the cross-entropy on
  the targets;
- sequence-classification heads: logits [B, C], labels [B]; one row per example; multi-label heads
  (float labels [B, C]: the per-label binary KL + BCE) and regression heads (float labels [B]: MSE to
  the teacher + to the gold) by their config's problem_type;
- question-answering heads: start and end logits [B, L], `start_positions` / `end_positions` [B]; two rows
  per window (its start and its end logits over its real positions), as `--task question-answering` does;
- token-classification heads: logits [B, L, C], labels [B, L] (-100 where no word starts, as
  DataCollatorForTokenClassification pads them); the KL and cross-entropy over the labelled positions.

The cosine term (alpha_cos > 0) compares the last hidden states of every real token. Each model is given
the batch entries its forward takes (a DistilBERT student gets no token_type_ids). The loss is a mean over
the micro-batch, so the Trainer divides it by the gradient-accumulation steps.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import Trainer

from .losses import distillation_loss, head_distillation_loss
from .losses.checks import check_options
from .losses.defaults import ALPHA_COS, ALPHA_KL, ALPHA_MLM, KL_ON, TEMPERATURE
from .models.classification import forward_inputs
from .models.heads import MASKED_LM, SPANS, TOKENS, head_problem
from .models.question_answering import qa_inputs
from .tasks.question_answering import span_rows

__all__ = ["DistillationTrainer", "check_pair"]


def _folder(model: nn.Module) -> str | None:
    """The local folder `model` was loaded from (its tokenizer files are compared), if any."""
    folder = getattr(getattr(model, "config", None), "_name_or_path", "")
    return folder if folder and os.path.isdir(folder) else None


def check_pair(teacher: nn.Module, student: nn.Module, tokenizer, alpha_cos: float) -> None:
    """The checks `distilx train` makes before its first step, for a teacher and student built by the
    caller: the same kind of head (a classifier student of a classifier teacher, for the same labels in the
    same order), equal widths for the cosine term, and one vocabulary (models/vocabulary.py: the tokenizer
    passed as processing_class and the models' folders; without a tokenizer, equal embedding counts)."""
    from .models.classification import check_classifier
    from .models.token_classification import check_token_classifier
    from .models.vocabulary import check_vocabulary
    from .tasks.base import check_widths
    from .tasks.labelled_data import LabelSet

    kinds = [head_problem(m) for m in (teacher, student)]
    if kinds[0] != kinds[1]:
        raise ValueError(f"the teacher is a {type(teacher).__name__} and the student a {type(student).__name__} "
                         f"({kinds[0]} / {kinds[1]}): distil a model into one of the same head and problem type (a "
                         "classifier into a classifier, a question-answering model into a question-answering model, "
                         "a masked-LM model into a masked-LM model)")
    if kinds[0] == SPANS:
        from .models.question_answering import check_qa_model

        check_qa_model(teacher, "teacher")
        check_qa_model(student, "student")
    elif kinds[0] != MASKED_LM:
        check = check_token_classifier if kinds[0] == TOKENS else check_classifier
        check(teacher, "teacher")
        check(student, "student")
        LabelSet.shared(teacher, student)
    check_widths(alpha_cos, teacher, student)
    tokenizer = tokenizer if hasattr(tokenizer, "get_vocab") else None  # a processing_class may be no tokenizer
    check_vocabulary(tokenizer, teacher=teacher, student=student, teacher_folder=_folder(teacher),
                     tokenizer_source=tokenizer, student_folder=_folder(student))


class DistillationTrainer(Trainer):
    """A transformers.Trainer whose loss distils `teacher` into the trained `model` (docs/tasks.md)."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-micro-batch mean

    def __init__(self, *args, teacher: nn.Module, temperature: float = TEMPERATURE, alpha_kl: float = ALPHA_KL,
                 alpha_mlm: float = ALPHA_MLM, alpha_cos: float = ALPHA_COS, kl_on: str = KL_ON,
                 backend: str = "auto", **kwargs):
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher={type(teacher).__name__}: DistillationTrainer needs the teacher model "
                            "(teacher=AutoModelFor...from_pretrained(folder)), which the student learns from")
        temperature, alpha_kl, alpha_mlm, alpha_cos = check_options(temperature, alpha_kl, alpha_mlm, alpha_cos,
                                                                    kl_on, backend)
        super().__init__(*args, **kwargs)
        if self.model is not None:  # (a model_init builds it later)
            check_pair(teacher, self.model, self.processing_class, alpha_cos)
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
            labels = torch.cat([inputs["start_positions"], inputs["end_positions"]])
            out = distillation_loss(s_logits, t_logits, labels, None, s_hidden, t_hidden, **self.loss_options)
        else:
            # the loss of what the student's logits mean (losses/heads.py): masked-LM rows by the attention mask,
            # token-classification rows by their labels, multi-label and regression heads their own losses
            out = head_distillation_loss(head_problem(student), s_out.logits, t_out.logits, inputs["labels"], mask,
                                         s_hidden, t_hidden, **self.loss_options)
        return (out.loss, s_out) if return_outputs else out.loss
