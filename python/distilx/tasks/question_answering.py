"""Task-stage distillation of extractive question answering: a fine-tuned …ForQuestionAnswering teacher,
SQuAD-layout questions cut into windows (qa_records.py, qa_windows.py; docs/tasks.md).

The loss reads each window twice, as two rows over its L positions: the start logits and the end logits.
On the 2B rows [start of each window; end of each window]: KL(teacher || student) at temperature T (times
T^2) and the cross-entropy on the gold start / end positions, through the same `distillation_loss` as
every task — so each term is the mean of its start and end halves, as in the Hugging Face QA heads'
(start_loss + end_loss) / 2 and the DistilBERT paper's SQuAD distillation. Positions outside the teacher's
attention mask (padding) take no part: their logits, in both models, are set to a large negative value
(`PADDED_LOGIT`), which gives them a probability of exactly 0 in fp32 (and no gradient). The optional cosine
compares the last hidden states of every real token.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.question_answering import check_qa_model, init_qa_student, load_qa_model, pretrained_qa_student, \
    qa_inputs, qa_model_for_finetuning
from .base import Task
from .labelled_data import ClassificationBatches
from .qa_records import read_qa_records
from .qa_windows import QAWindows

__all__ = ["QuestionAnsweringTask", "QAForward", "span_rows", "TASK", "PADDED_LOGIT"]

# exp((PADDED_LOGIT - max) / T) is 0 in fp32 for any T up to ~1e7 and any real logit
PADDED_LOGIT = -1e9


def span_rows(start_logits: torch.Tensor, end_logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[2B, L] fp32 rows: the start logits of each window, then the end logits, padding at PADDED_LOGIT."""
    rows = torch.cat([start_logits, end_logits]).float()
    return rows.masked_fill(torch.cat([attention_mask, attention_mask]) == 0, PADDED_LOGIT)


def _outputs(model: nn.Module, batch: dict, hidden: bool):
    out = model(**qa_inputs(model, batch), output_hidden_states=hidden)
    rows = span_rows(out.start_logits, out.end_logits, batch["attention_mask"])
    return rows, (out.hidden_states[-1][batch["attention_mask"].bool()] if hidden else None)


class QAForward(nn.Module):
    """Student forward and the loss for one batch of windows (DDP wraps this module, so the loss is computed
    in forward). teacher None (no term reads it): the student's own outputs, detached, stand in for it."""

    def __init__(self, model: nn.Module, loss_options: dict):
        super().__init__()
        self.model = model
        self.loss_options = loss_options

    def forward(self, batch: dict, teacher: tuple[torch.Tensor, torch.Tensor | None] | None):
        from ..losses import distillation_loss

        s_rows, s_hidden = _outputs(self.model, batch, hidden=teacher is not None and teacher[1] is not None)
        t_rows, t_hidden = (s_rows.detach(), None) if teacher is None else teacher
        targets = torch.cat([batch["start_positions"], batch["end_positions"]])
        return distillation_loss(s_rows, t_rows, targets, None, s_hidden, t_hidden, **self.loss_options)


def _windows(files, config) -> QAWindows:
    return QAWindows(read_qa_records(files), config.tokenizer or config.teacher, seq_len=config.seq_len,
                     doc_stride=config.doc_stride, max_query_len=config.max_query_len, files=files)


class QuestionAnsweringTask(Task):
    name = "question-answering"
    gold_term = "ce"

    def load_teacher(self, path) -> nn.Module:
        return load_qa_model(path)

    def init_student(self, teacher, config) -> nn.Module:
        return init_qa_student(teacher, n_layers=config.student_layers, layers=config.student_layer_indices)

    def load_student(self, path, teacher) -> nn.Module:
        return pretrained_qa_student(path, teacher)

    def check_models(self, config, teacher, student) -> None:
        super().check_models(config, teacher, student)
        check_qa_model(student, "student")  # e.g. a ready student of another head, passed to train()

    def finetune_model(self, encoder_path: str, config) -> nn.Module:
        """A …ForQuestionAnswering on the encoder folder's weights, its head freshly initialised (config.seed)."""
        return qa_model_for_finetuning(encoder_path, config.seed)

    def make_stream(self, config, tokenizer, env, teacher):
        windows = _windows(config.train_files, config)
        return ClassificationBatches(windows, batch_size=config.batch_size, seed=config.seed, rank=env.rank,
                                     world_size=env.world_size, padding=config.padding)

    def check_eval_input(self, config, tokenizer, teacher) -> None:
        from ..qa_eval import check_decoding

        check_decoding(config.n_best_size, config.max_answer_len, config.null_score_diff_threshold)
        if not config.eval_files or config.eval_batches == 0:
            return
        try:
            records = read_qa_records(config.eval_files)
            QAWindows(records[:self._eval_questions(config)], config.tokenizer or config.teacher,
                      seq_len=config.seq_len, doc_stride=config.doc_stride, max_query_len=config.max_query_len)
        except (ValueError, FileNotFoundError) as exc:
            raise type(exc)(f"--eval-files: {exc}") from None
        if not records:
            raise ValueError(f"eval_files {list(config.eval_files)} hold no question for the end-of-run evaluation: "
                             "add questions, or pass --eval-batches 0 to skip the evaluation")
        if config.squad_v2 is False and any(not r.answers for r in records):
            raise ValueError("--squad-v2 false, but eval_files hold questions without an answer (SQuAD v2.0): "
                             "drop the flag or those questions")

    @staticmethod
    def _eval_questions(config) -> int:
        return config.eval_batches * config.batch_size

    def student_forward(self, student, loss_options, config) -> nn.Module:
        return QAForward(student, loss_options)

    def loss(self, teacher, forward, batch, device, config):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        side = None
        if teacher is not None:
            with torch.no_grad():
                side = _outputs(teacher, batch, hidden=config.alpha_cos > 0)
        return forward(batch, side)

    def evaluate(self, teacher, student, config, tokenizer, device) -> dict:
        from ..qa_eval import evaluate_question_answering

        return evaluate_question_answering(
            teacher, student, config.eval_files, config.tokenizer or config.teacher, seq_len=config.seq_len,
            doc_stride=config.doc_stride, max_query_len=config.max_query_len, max_answer_len=config.max_answer_len,
            n_best_size=config.n_best_size, null_score_diff_threshold=config.null_score_diff_threshold,
            squad_version=_version(config.squad_v2), batch_size=config.batch_size,
            max_questions=self._eval_questions(config), device=device)

    def table(self, metrics: dict) -> str:
        from ..report import question_answering_table

        return question_answering_table(metrics)


def _version(squad_v2: bool | None) -> str | None:
    return None if squad_v2 is None else ("2.0" if squad_v2 else "1.1")


TASK = QuestionAnsweringTask()
