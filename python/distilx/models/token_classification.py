"""Token-classification models (NER, POS, chunking): the fine-tuned …ForTokenClassification teacher, its
students (models/heads.py: the teacher's own class with fewer layers, the `classifier` head copied), and
the untrained model `distilx finetune` starts from."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .heads import TOKEN_CLASSIFICATION, config_of, warn_if_untrained

__all__ = ["check_token_classifier", "load_token_classifier", "init_token_classifier_student",
           "pretrained_token_classifier_student", "untrained_token_classifier"]


def check_token_classifier(model: nn.Module, role: str = "teacher") -> None:
    """Raise unless `model` is the …ForTokenClassification of its model type, with at least two tags."""
    TOKEN_CLASSIFICATION.check(model, role)
    if model.config.num_labels < 2:
        raise ValueError(f"the {role} tags with num_labels={model.config.num_labels}: a token classifier needs at "
                         "least two tags (e.g. O and one entity tag)")
    from ..tasks.labelled_data import LabelSet

    LabelSet.of(model.config, role)  # id2label numbers the tags 0..n-1, each named once
    if role == "teacher":
        warn_if_untrained(model)


def load_token_classifier(path: str | Path, role: str = "teacher") -> nn.Module:
    """A fine-tuned …ForTokenClassification from a local folder, in eval mode: the teacher of task
    token-classification (or, role "student", a student of it). A folder without a trained head, or holding
    another head, is a ValueError saying what it holds."""
    return TOKEN_CLASSIFICATION.load(path, check_token_classifier, role)


def init_token_classifier_student(teacher, n_layers: int | None = None, layers: list[int] | None = None,
                                  **shape) -> nn.Module:
    """A shallower copy of a fine-tuned token classifier `teacher` (a model or a folder): its own class, the
    kept layers, the embeddings and the head copied; `shape` (hidden, heads, intermediate, init, selection,
    seed) makes it narrower (heads.fewer_layers). fp32, train mode."""
    if isinstance(teacher, (str, Path)):
        teacher = load_token_classifier(teacher)
    check_token_classifier(teacher)
    return TOKEN_CLASSIFICATION.init_student(teacher, n_layers, layers, **shape)


def pretrained_token_classifier_student(path: str | Path, teacher: nn.Module) -> nn.Module:
    """"Distil while fine-tuning": a token classifier for the teacher's tags whose encoder comes from a
    pre-trained folder; the head copied from the teacher when the classes match (HeadKind.pretrained_student)."""
    return TOKEN_CLASSIFICATION.pretrained_student(path, teacher, lambda m: check_token_classifier(m, "student"))


def untrained_token_classifier(encoder_path: str | Path, tags: list[str], seed: int = 0) -> nn.Module:
    """The …ForTokenClassification of an encoder folder (a bare encoder, a masked-LM model, or another
    head's model of an adapter-table architecture) with its encoder weights and a fresh head for `tags`
    (id order), drawn with `seed`: what `distilx finetune --task token-classification` trains."""
    from transformers import AutoModelForTokenClassification

    from ..safe_loading import refusing_code

    path = Path(encoder_path)
    config, _ = config_of(path)
    config.id2label = dict(enumerate(tags))
    config.label2id = {tag: i for i, tag in enumerate(tags)}
    config.problem_type = None
    torch.manual_seed(seed)
    with warnings.catch_warnings(), refusing_code(path):
        warnings.simplefilter("ignore")  # "classifier.* newly initialized": that is the point
        model = AutoModelForTokenClassification.from_pretrained(str(path), config=config, ignore_mismatched_sizes=True)
    check_token_classifier(model, role="student")  # untrained by design: not warned about as a teacher would be
    return model.float().train()
