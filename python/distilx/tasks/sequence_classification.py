"""Task-stage distillation: a fine-tuned …ForSequenceClassification teacher, labelled examples (docs/tasks.md).

The loss reads one row per example, by the teacher's problem type (losses/heads.py):
- single-label: KL(teacher || student) at temperature T on the class logits (times T^2) + the
  cross-entropy on the gold label — the same `distillation_loss` as pre-training, on [B, C] logits;
- multi-label: the per-label binary KL at T (times T^2) + the binary cross-entropy on the gold labels;
- regression: the MSE to the teacher's output + the MSE to the gold value;
and optionally the cosine between the last hidden states of every real token.
"""

from __future__ import annotations

from torch import nn

from ..models.classification import check_classifier
from ..models.heads import SEQUENCE_CLASSIFICATION
from ..report import classification_table
from .head_task import HeadForward, HeadTask
from .labelled_data import LabelledExamples, LabelSet

__all__ = ["ClassifierForward", "SequenceClassificationTask", "TASK"]

ClassifierForward = HeadForward  # the name this module exported before token classification shared it


class SequenceClassificationTask(HeadTask):
    name = "sequence-classification"
    kind = SEQUENCE_CLASSIFICATION

    def check(self, model: nn.Module, role: str = "teacher") -> None:
        check_classifier(model, role)

    def examples(self, files, config, labels: LabelSet) -> LabelledExamples:
        return LabelledExamples(files, config.tokenizer or config.teacher, text_fields=config.text_fields,
                                label_field=config.label_field, labels=labels, seq_len=config.seq_len)

    def evaluate(self, teacher, student, config, tokenizer, device) -> dict:
        from ..classification_eval import evaluate_classification

        return evaluate_classification(teacher, student, config.eval_files, config.tokenizer or config.teacher,
                                       text_fields=config.text_fields, label_field=config.label_field,
                                       seq_len=config.seq_len, batch_size=config.batch_size,
                                       max_batches=config.eval_batches, device=device,
                                       threshold=config.multi_label_threshold)

    def table(self, metrics: dict) -> str:
        return classification_table(metrics)


TASK = SequenceClassificationTask()
