"""Sequence-classification models: the fine-tuned teacher, its students, and the inputs each forward takes.

A …ForSequenceClassification reaches its encoder the way its …ForMaskedLM sibling does, so the adapter
table (adapters.py) serves it through the same entry (`adapters.encoder_adapter`). The classification head needs
no entry of its own: a student is the teacher's own class with fewer layers
(`builders.same_class_fewer_layers`), so every tensor outside the layer stack — the embeddings and the
whole head (BERT's pooler + classifier, RoBERTa's and ELECTRA's dense + out_proj, DistilBERT's
pre_classifier + classifier, DeBERTa-v2's pooler…) — is copied as it is, and keeping every layer
reproduces the teacher's class logits.

A BERT teacher therefore gets a shallower `BertForSequenceClassification`, not DistilBERT's classifier
(docs/tasks.md says why: DistilBERT's head is dense + ReLU where BERT's pooler is dense + tanh, and
DistilBERT has no segment embeddings, which text pairs use).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn

from ..safe_loading import refusing_code
from .adapters import encoder_adapter
from .heads import PROBLEMS, REGRESSION, SEQUENCE_CLASSIFICATION, SINGLE_LABEL, config_of, fresh_tensors, \
    problem_of, warn_if_untrained

__all__ = ["load_classifier", "init_classifier_student", "pretrained_classifier_student", "classifier_to_fine_tune",
           "forward_inputs", "check_classifier"]


def check_classifier(model: nn.Module, role: str = "teacher") -> None:
    """Raise unless `model` is the …ForSequenceClassification of its model type, for a problem distilx
    distils: single-label classification (num_labels >= 2, one class per example), multi-label
    classification (problem_type="multi_label_classification": any number of classes per example) or
    regression (one output, problem_type="regression" or num_labels = 1 without a problem_type); whose
    id2label numbers its labels 0..n-1. A teacher whose head looks untrained is warned about."""
    SEQUENCE_CLASSIFICATION.check(model, role)
    config = model.config
    problem = problem_of(config)
    if problem not in PROBLEMS:
        raise ValueError(f"the {role} is set up for problem_type={config.problem_type!r}: distilx distils the "
                         f"problem types {list(PROBLEMS)}")
    if (problem == SINGLE_LABEL and config.num_labels < 2) or (problem == REGRESSION and config.num_labels != 1):
        raise ValueError(f"the {role} is set up for problem_type={problem!r} with num_labels={config.num_labels}: "
                         "distilx distils single-label classifiers with num_labels >= 2, multi-label classifiers, "
                         "and regression heads with one output (num_labels = 1)")
    from ..tasks.labelled_data import LabelSet

    LabelSet.of(config, role)  # id2label numbers the labels 0..n-1, each named once
    if role == "teacher":
        warn_if_untrained(model)


def load_classifier(path: str | Path, role: str = "teacher") -> nn.Module:
    """A fine-tuned …ForSequenceClassification from a local folder, in eval mode: the teacher of task
    sequence-classification (or, role "student", a student trained for it, e.g. to evaluate it). A folder
    without trained head weights (a masked-LM model, a bare encoder) is a ValueError saying what the folder
    holds and naming the role."""
    return SEQUENCE_CLASSIFICATION.load(path, check_classifier, role)


def init_classifier_student(teacher, n_layers: int | None = None, layers: list[int] | None = None, *,
                            hidden: int | None = None, heads: int | None = None, intermediate: int | None = None,
                            init: str = "teacher", selection: str = "uniform", seed: int = 0) -> nn.Module:
    """A shallower copy of a fine-tuned classifier `teacher` (a model or a folder): its own class, student
    layer i = teacher layer layers[i] (default: half the layers, spread as init_student spreads them), the
    embeddings and the classification head copied; hidden / heads / intermediate: a narrower shape made by
    `init` ("teacher", "weight-selection" or "random"; models/shapes.py). fp32, train mode."""
    if isinstance(teacher, (str, Path)):
        teacher = load_classifier(teacher)
    check_classifier(teacher)
    return SEQUENCE_CLASSIFICATION.init_student(teacher, n_layers, layers, hidden=hidden, heads=heads,
                                                intermediate=intermediate, init=init, selection=selection, seed=seed)


def pretrained_classifier_student(path: str | Path, teacher: nn.Module) -> nn.Module:
    """"Distil while fine-tuning": a classifier for the teacher's labels (and problem type) whose encoder
    comes from a pre-trained (not fine-tuned) folder, e.g. a masked-LM student written by `distilx train`.

    The tensors the folder lacks — the classification head, and BERT's pooler, which masked-LM models do
    not have — are copied from the teacher when the student is of the teacher's own class (the same head
    layout) and the tensor has the same name and shape; otherwise they keep transformers' fresh
    initialisation (e.g. a DistilBERT student of a BERT teacher: its classifier reads pre_classifier +
    ReLU, not BERT's tanh pooler, so even the same-shaped `classifier` would be a wrong start). The names of
    the copied tensors are recorded in the config (`distilx_head_from_teacher`). fp32, train mode.
    """
    return SEQUENCE_CLASSIFICATION.pretrained_student(path, teacher, lambda m: check_classifier(m, role="student"))


def _classifier_on(path: Path, id2label: dict[int, str], role: str) -> tuple[nn.Module, set[str]]:
    """The …ForSequenceClassification of a pre-trained folder's model type for the labels `id2label`: the
    weights the folder has, transformers' fresh initialisation for the rest (returned by name). Refused
    when the folder lacks encoder weights (a layer or embedding tensor): it is not a pre-trained encoder."""
    from transformers import AutoModelForSequenceClassification

    config, _ = config_of(path)
    config.num_labels = len(id2label)
    config.id2label = dict(id2label)
    config.label2id = {name: i for i, name in id2label.items()}
    config.problem_type = "single_label_classification"
    with refusing_code(path):
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(path), config=config, output_loading_info=True, ignore_mismatched_sizes=True)
    check_classifier(model, role=role)
    fresh = fresh_tensors(info)
    adapter = encoder_adapter(model)
    encoder = {id(t) for part in (adapter.embeddings(model), adapter.layers(model)) for t in part.parameters()}
    lacking = sorted(name for name, t in model.named_parameters() if id(t) in encoder and name in fresh)
    if lacking:
        raise ValueError(f"{path} lacks {len(lacking)} encoder tensors of a {type(model).__name__} (e.g. "
                         f"{lacking[0]}): the {role} needs a pre-trained encoder or masked-LM folder of this "
                         "architecture")
    return model, fresh


def classifier_to_fine_tune(path: str | Path, labels: list[str], seed: int) -> nn.Module:
    """`distilx finetune`'s starting point: the …ForSequenceClassification of a pre-trained encoder or
    masked-LM folder, for `labels` (in id order), its encoder the folder's weights and its head — every
    module outside the base model (BERT's classifier; RoBERTa's dense + out_proj; DistilBERT's
    pre_classifier + classifier…) — freshly initialised with `seed`, even when the folder holds a head
    already (a classifier folder re-fine-tuned on new labels). A pooler inside the base model (BERT's)
    keeps the folder's weights when it has them. fp32, train mode."""
    if len(labels) < 2:
        raise ValueError(f"labels={list(labels)}: a classifier needs at least two classes")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels={list(labels)} name a class twice")
    torch.manual_seed(seed)  # what the folder lacks inside the base model (a masked-LM folder's pooler)
    model, _ = _classifier_on(Path(path), dict(enumerate(labels)), "model to fine-tune")
    # transformers' own initialisation of a new model of this class (its _init_weights skips tensors that
    # were loaded), seeded; its modules outside the base model replace the loaded ones
    torch.manual_seed(seed)
    fresh = type(model)(model.config)
    with torch.no_grad():
        for name, child in model.named_children():
            if child is not model.base_model:
                child.load_state_dict(getattr(fresh, name).state_dict())
    model.config.distilx_fine_tuned_from = str(path)  # provenance, saved in config.json
    return model.float().train()


def forward_inputs(model: nn.Module, batch: dict) -> dict:
    """The entries of `batch` that `model`'s forward takes, labels excluded (distilx computes the loss
    itself): e.g. a DistilBERT student is not given the token_type_ids its BERT teacher reads."""
    accepted = inspect.signature(model.forward).parameters
    return {k: v for k, v in batch.items() if k in accepted and k != "labels"}
