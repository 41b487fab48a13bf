"""Task-stage distillation: a fine-tuned …ForSequenceClassification teacher, labelled examples (docs/tasks.md).

The loss reads one row per example: KL(teacher || student) at temperature T on the class logits (times
T^2), the cross-entropy on the gold label, and optionally the cosine between the last hidden states of
every real token — the same `distillation_loss` as pre-training, on [B, C] logits.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.classification import classifier_to_fine_tune, forward_inputs, init_classifier_student, \
    load_classifier, pretrained_classifier_student
from ..report import CLASSIFICATION_MEASURES, classification_table
from .base import Task
from .labelled_data import ClassificationBatches, LabelledExamples, LabelSet, labels_in_files

__all__ = ["ClassifierForward", "SequenceClassificationTask", "TASK"]


class ClassifierForward(nn.Module):
    """Student forward and the loss for one batch: class logits [B, C], one row per example, and (when the
    cosine term is on) the last hidden states of the real tokens. The loss is computed inside forward, as
    for masked-LM, so that DDP (which wraps this module) sees it. teacher None (no term reads it): the
    student's own outputs, detached, stand in for it."""

    def __init__(self, model: nn.Module, loss_options: dict):
        super().__init__()
        self.model = model
        self.loss_options = loss_options

    def forward(self, batch: dict, teacher: tuple[torch.Tensor, torch.Tensor | None] | None):
        from ..losses import distillation_loss

        s_logits, s_hidden = _logits_and_hidden(self.model, batch, hidden=teacher is not None and teacher[1] is not None)
        t_logits, t_hidden = (s_logits.detach(), None) if teacher is None else teacher
        return distillation_loss(s_logits, t_logits, batch["labels"], None, s_hidden, t_hidden, **self.loss_options)


def _logits_and_hidden(model: nn.Module, batch: dict, hidden: bool):
    out = model(**forward_inputs(model, batch), output_hidden_states=hidden)
    return out.logits, (out.hidden_states[-1][batch["attention_mask"].bool()] if hidden else None)


def _examples(files, config, labels: LabelSet) -> LabelledExamples:
    return LabelledExamples(files, config.tokenizer or config.teacher, text_fields=config.text_fields,
                            label_field=config.label_field, labels=labels, seq_len=config.seq_len)


class SequenceClassificationTask(Task):
    name = "sequence-classification"
    gold_term = "ce"
    measures = tuple(CLASSIFICATION_MEASURES)

    def load_teacher(self, path) -> nn.Module:
        return load_classifier(path)

    def init_student(self, teacher, config) -> nn.Module:
        return init_classifier_student(teacher, n_layers=config.student_layers, layers=config.student_layer_indices)

    def load_student(self, path, teacher) -> nn.Module:
        return pretrained_classifier_student(path, teacher)

    def check_models(self, config, teacher, student) -> None:
        super().check_models(config, teacher, student)
        labels = LabelSet.shared(teacher, student)
        if config.labels and list(labels.names) != list(config.labels):
            raise ValueError(f"labels={list(config.labels)}, but the teacher's (config.json id2label) are "
                             f"{list(labels.names)}: drop --labels or use a teacher of those labels")

    def finetune_model(self, encoder_path: str, config) -> nn.Module:
        """A …ForSequenceClassification on `encoder_path`'s weights with a fresh head (seeded by
        config.seed) for config.labels, or the labels of config.train_files (labelled_data.labels_in_files
        says in which order)."""
        labels = list(config.labels) or labels_in_files(config.train_files, config.label_field)
        return classifier_to_fine_tune(encoder_path, labels, config.seed)

    def make_stream(self, config, tokenizer, env, teacher):
        examples = _examples(config.train_files, config, LabelSet.of(teacher.config))
        return ClassificationBatches(examples, batch_size=config.batch_size, seed=config.seed, rank=env.rank,
                                     world_size=env.world_size, padding=config.padding)

    def check_eval_input(self, config, tokenizer, teacher) -> None:
        if not config.eval_files or config.eval_batches == 0:
            return
        try:
            examples = _examples(config.eval_files, config, LabelSet.of(teacher.config))
        except (ValueError, FileNotFoundError) as exc:
            raise type(exc)(f"--eval-files: {exc}") from None
        if len(examples) == 0:
            raise ValueError(f"eval_files {list(config.eval_files)} hold no labelled example for the end-of-run "
                             "evaluation: add examples, or pass --eval-batches 0 to skip the evaluation")

    def student_forward(self, student, loss_options, config) -> nn.Module:
        return ClassifierForward(student, loss_options)

    def loss(self, teacher, forward, batch, device, config):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        side = None
        if teacher is not None:
            with torch.no_grad():
                side = _logits_and_hidden(teacher, batch, hidden=config.alpha_cos > 0)
        return forward(batch, side)

    def evaluate(self, teacher, student, config, tokenizer, device) -> dict:
        from ..classification_eval import evaluate_classification

        return evaluate_classification(teacher, student, config.eval_files, config.tokenizer or config.teacher,
                                       text_fields=config.text_fields, label_field=config.label_field,
                                       seq_len=config.seq_len, batch_size=config.batch_size,
                                       max_batches=config.eval_batches, device=device)

    def table(self, metrics: dict) -> str:
        return classification_table(metrics)

    def evaluate_one(self, model, config, tokenizer, device) -> dict:
        """The model's accuracy and macro-F1 on config.eval_files (its first eval_batches x batch_size
        examples), as `teacher_*` entries; one pass over the examples."""
        from ..classification_eval import accuracy, macro_f1, predict
        from ..evaluation import count_parameters

        examples = _examples(config.eval_files, config, LabelSet.of(model.config))
        gold = examples.labels[:examples.count(config.batch_size, config.eval_batches)]
        predicted = predict(model, examples, batch_size=config.batch_size, max_batches=config.eval_batches,
                            device=device)
        return {"task": self.name, "examples": len(gold), "teacher_accuracy": accuracy(predicted, gold),
                "teacher_macro_f1": macro_f1(predicted, gold), "teacher_params": count_parameters(model)}


TASK = SequenceClassificationTask()
