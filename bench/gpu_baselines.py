"""The two baselines of bench/gpu_train.py: what a user runs today instead of distilx.

- "trainer-eager-kd": `transformers.Trainer` with a knowledge-distillation loss written the way tutorials
  write it (`KDTrainer`, `tutorial_kd_loss`): both models give full [B, L, V] logits; F.kl_div on
  log_softmax(s/T) against softmax(t/T) x T^2 over the real tokens, F.cross_entropy on the masked-LM labels,
  F.cosine_embedding_loss on the last hidden states; the teacher runs under no_grad (bf16); the Trainer's own
  bf16 autocast, optimizer (fused AdamW), clipping and data loader.
- "research-loop": a step shaped like DistilBERT's research distiller, written from its description (the
  recipe in docs/recipe.md): DistilBERT's `prepare_batch_mlm` masking on the device (`research_mlm_batch`:
  count^-0.7 smoothed multinomial targets, 80/10/10), the student and teacher forwards, the eager triple
  loss (`distilx.losses.reference`, the line-by-line transcription of the distiller's loss), AMP (bf16
  autocast, for apex O1), AdamW, clipping at 5 (`research_step`).

Both compute the same quantity as `distilx.distillation_loss(..., kl_on="tokens")`: tests/test_gpu_train.py
checks the values and gradients on the same inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import Trainer

from distilx.losses.reference import reference_distillation_loss

MASK_REPLACE = (0.8, 0.1, 0.1)  # [MASK] / a random token / unchanged, for the masked targets
SMOOTHING = 0.7  # DistilBERT's target sampling weight count^-0.7


def tutorial_kd_loss(s_logits, t_logits, labels, attention_mask, s_hidden, t_hidden, *, temperature, alpha_kl,
                     alpha_mlm, alpha_cos):
    """The distillation loss of a typical tutorial, on the student's and teacher's [B, L, V] outputs."""
    real = attention_mask.bool()
    vocab = s_logits.shape[-1]
    soft_student = F.log_softmax(s_logits[real] / temperature, dim=-1)
    soft_teacher = F.softmax(t_logits[real] / temperature, dim=-1)
    kd = F.kl_div(soft_student, soft_teacher, reduction="batchmean") * temperature**2
    ce = F.cross_entropy(s_logits.view(-1, vocab), labels.view(-1), ignore_index=-100)
    hs, ht = s_hidden[real], t_hidden[real]
    cos = F.cosine_embedding_loss(hs, ht, torch.ones(hs.shape[0], device=hs.device))
    return alpha_kl * kd + alpha_mlm * ce + alpha_cos * cos


class KDTrainer(Trainer):
    """Trainer whose loss distils a frozen teacher with `tutorial_kd_loss`."""

    def __init__(self, *args, teacher, loss_options: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False)
        self.loss_options = loss_options

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        s_out = model(**inputs, output_hidden_states=True)
        with torch.no_grad():
            t_out = self.teacher(**inputs, output_hidden_states=True)
        loss = tutorial_kd_loss(s_out.logits, t_out.logits, labels, inputs["attention_mask"],
                                s_out.hidden_states[-1], t_out.hidden_states[-1], **self.loss_options)
        return (loss, s_out) if return_outputs else loss


def token_probabilities(counts: torch.Tensor, special_ids) -> torch.Tensor:
    """DistilBERT's target sampling weights: max(count, 1)^-0.7, special tokens never chosen."""
    probs = torch.maximum(counts.double(), torch.ones_like(counts.double())) ** -SMOOTHING
    probs[list(special_ids)] = 0.0
    return probs.float()


def research_mlm_batch(ids, token_probs, *, mlm_probability, mask_id, vocab):
    """prepare_batch_mlm for packed rows (every token real), on the device of `ids`: (input_ids, labels)."""
    x_prob = token_probs[ids.flatten()]
    n_targets = math.ceil(mlm_probability * ids.numel())
    targets = torch.multinomial(x_prob / x_prob.sum(), n_targets, replacement=False)
    predicted = torch.zeros(ids.numel(), dtype=torch.bool, device=ids.device)
    predicted[targets] = True
    predicted = predicted.view_as(ids)
    chosen = ids[predicted]
    how = torch.multinomial(torch.tensor(MASK_REPLACE, device=ids.device), chosen.numel(), replacement=True)
    replaced = torch.where(how == 0, torch.full_like(chosen, mask_id),
                           torch.where(how == 1, torch.randint_like(chosen, vocab), chosen))
    labels = ids.masked_fill(~predicted, -100)
    return ids.masked_scatter(predicted, replaced), labels


def research_step(teacher, student, optimizer, scheduler, ids, attention_mask, labels, *, amp, loss_options,
                  max_grad_norm):
    """One optimizer step of the research loop; returns the loss (a device tensor: no host sync)."""
    with amp:
        s_out = student(input_ids=ids, attention_mask=attention_mask, output_hidden_states=True)
        with torch.no_grad():
            t_out = teacher(input_ids=ids, attention_mask=attention_mask, output_hidden_states=True)
        loss = reference_distillation_loss(s_out.logits, t_out.logits, labels, attention_mask,
                                           s_out.hidden_states[-1], t_out.hidden_states[-1], **loss_options)[0]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()
