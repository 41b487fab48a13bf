"""Extractive question-answering models: the fine-tuned teacher, its students, a fresh head to fine-tune.

A …ForQuestionAnswering reaches its encoder as its …ForMaskedLM sibling does (`adapters.encoder_adapter`),
and its head — `qa_outputs` (hidden -> start and end logits), with whatever the architecture puts before
it (ModernBERT's prediction head) — lies outside the layer stack. So a student is the teacher's own class
with fewer layers (`builders.same_class_fewer_layers`): embeddings and head copied, and keeping every
layer reproduces the teacher's start and end logits, as for sequence classification (models/classification.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..safe_loading import refusing_code
from .adapters import UnsupportedModelError, encoder_adapter
from .heads import config_of as _config_of
from .heads import fewer_layers, fresh_tensors, head_from_teacher

__all__ = ["check_qa_model", "load_qa_model", "init_qa_student", "pretrained_qa_student", "qa_model_for_finetuning",
           "qa_inputs"]

# batch entries that are targets, not model inputs
TARGETS = ("start_positions", "end_positions")


def check_qa_model(model: nn.Module, role: str = "teacher") -> None:
    """Raise unless `model` is the …ForQuestionAnswering of its model type with a start/end head."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES

    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    expected = MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES.get(model_type)
    if expected is None or type(model).__name__ != expected:
        raise UnsupportedModelError(f"the {role} is a {type(model).__name__}: task question-answering takes a "
                                    f"…ForQuestionAnswering ({expected or 'transformers has none for model_type ' + repr(model_type)})")
    if config.num_labels != 2:
        raise ValueError(f"the {role}'s question-answering head has num_labels={config.num_labels}; an extractive "
                         "head gives 2 logits per token (start and end)")


def _from_folder(path: Path, **kwargs):
    from transformers import AutoModelForQuestionAnswering

    config, declared = _config_of(path)
    with refusing_code(path):  # a hostile pickle: one line naming the file
        model, info = AutoModelForQuestionAnswering.from_pretrained(str(path), config=config, output_loading_info=True,
                                                                    **kwargs)
    return model, fresh_tensors(info), declared


def load_qa_model(path: str | Path, role: str = "teacher") -> nn.Module:
    """A fine-tuned …ForQuestionAnswering from a local folder, in eval mode: the teacher of task
    question-answering. A folder without trained head weights (a masked-LM model, a bare encoder such as
    all-MiniLM-L6-v2) is a ValueError saying what the folder holds and how to get a teacher."""
    path = Path(path)
    model, fresh, declared = _from_folder(path)
    if fresh:  # before the head's shape: a token classifier's num_labels says nothing about a QA head
        holds = (declared.get("architectures") or ["(config.json names no architecture)"])[0]
        raise ValueError(f"the {role} {path} is not a fine-tuned question-answering model: its weights lack {len(fresh)} tensors "
                         f"of a {type(model).__name__} (e.g. {sorted(fresh)[0]}); config.json says it holds a {holds}. "
                         "Fine-tune one first (docs/tasks.md: a teacher for question answering)")
    check_qa_model(model, role)
    return model.eval()


def init_qa_student(teacher, n_layers: int | None = None, layers: list[int] | None = None, **shape) -> nn.Module:
    """A shallower copy of a fine-tuned QA `teacher` (a model or a folder): its own class, student layer i =
    teacher layer layers[i] (default: half, spread as init_student spreads them), embeddings and head copied;
    `shape` (hidden, heads, intermediate, init, selection, seed) makes it narrower (heads.fewer_layers).
    fp32, train mode."""
    if isinstance(teacher, (str, Path)):
        teacher = load_qa_model(teacher)
    check_qa_model(teacher)
    return fewer_layers(teacher, n_layers, layers, **shape)


def pretrained_qa_student(path: str | Path, teacher: nn.Module) -> nn.Module:
    """"Distil while fine-tuning": a QA model whose encoder comes from a pre-trained (not fine-tuned) folder.
    The tensors the folder lacks (the head) are copied from the teacher when the student is of the teacher's
    class and the tensor has the same name and shape, else keep transformers' fresh initialisation; their
    names are recorded in the config (`distilx_head_from_teacher`). fp32, train mode."""
    path = Path(path)
    student, fresh, _ = _from_folder(path, ignore_mismatched_sizes=True)
    check_qa_model(student, role="student")
    head_from_teacher(student, fresh, teacher)
    return student.float().train()


def qa_model_for_finetuning(encoder_path: str | Path, seed: int) -> nn.Module:
    """The …ForQuestionAnswering of a pre-trained encoder folder (a masked-LM model, a bare encoder): its
    weights, the head freshly initialised (seeded). What `distilx finetune --task question-answering` trains
    into a teacher. fp32, train mode."""
    torch.manual_seed(seed)
    model, _, _ = _from_folder(Path(encoder_path))
    check_qa_model(model, role="model")
    encoder_adapter(model)  # an architecture of the adapter table
    return model.float().train()


def qa_inputs(model: nn.Module, batch: dict) -> dict:
    """The entries of `batch` that `model`'s forward takes, targets excluded (distilx computes the loss)."""
    from .classification import forward_inputs

    return {k: v for k, v in forward_inputs(model, batch).items() if k not in TARGETS}
