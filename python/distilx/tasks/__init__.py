"""What is distilled: one `Task` per kind of teacher, giving the training loop what differs between them.

- `masked_lm.py`: pre-training distillation of a masked-LM teacher on raw text (the Rust engine's
  `MaskedLMStream`, the MLM head projected only on the rows the loss reads);
- `sequence_classification.py`: task-stage distillation of a fine-tuned …ForSequenceClassification on
  labelled examples (`labelled_data.py`: reading, label mapping, tokenization, resumable batches);
- `question_answering.py`: task-stage distillation of a fine-tuned …ForQuestionAnswering on SQuAD-layout
  questions (`qa_records.py`: reading and checking; `qa_windows.py`: windows, offsets, targets);
- `token_classification.py`: a fine-tuned …ForTokenClassification (NER, POS, chunking) on tagged
  sentences (`tagged_data.py`: .jsonl and CoNLL files, word/sub-token alignment);
- `head_task.py`: what the fine-tuned-head tasks share (models, batches, the loss by head);
- `base.py`: the interface the loop (training.py) calls, and what every task shares.

`TASKS` imports without torch (TrainConfig validates against it); the rest loads on first use.
"""

from importlib import import_module

TASKS = ("masked-lm", "sequence-classification", "question-answering", "token-classification")

_MODULES = {"masked-lm": "masked_lm", "sequence-classification": "sequence_classification",
            "question-answering": "question_answering", "token-classification": "token_classification"}

__all__ = ["TASKS", "task_for"]


def task_for(name: str):
    """The Task object of `name` (one of TASKS)."""
    if name not in _MODULES:
        raise ValueError(f"task={name!r}; choose one of {TASKS}")
    return import_module(f".{_MODULES[name]}", __name__).TASK
