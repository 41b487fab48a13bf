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
from .adapters import UnsupportedModelError, adapter_for_type, encoder_adapter
from .builders import same_class_fewer_layers
from .loading import read_config_json
from .student import kept_layers

__all__ = ["load_classifier", "init_classifier_student", "pretrained_classifier_student", "forward_inputs",
           "check_classifier"]


def check_classifier(model: nn.Module, role: str = "teacher") -> None:
    """Raise unless `model` is the …ForSequenceClassification of its model type, for single-label
    classification (the only kind distilx distils: one class per example, num_labels >= 2)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    expected = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.get(model_type)
    if expected is None or type(model).__name__ != expected:
        raise UnsupportedModelError(f"the {role} is a {type(model).__name__}: task sequence-classification takes a "
                                    f"…ForSequenceClassification ({expected or 'none exists for model_type ' + repr(model_type)})")
    if config.problem_type not in (None, "single_label_classification") or config.num_labels < 2:
        raise ValueError(f"the {role} is set up for problem_type={config.problem_type!r} with num_labels="
                         f"{config.num_labels}: distilx distils single-label classifiers (num_labels >= 2, one "
                         "class per example); regression and multi-label heads are not supported")


def _config_of(path: Path):
    """The config.json of a model folder, read as its model_type's config class (no model_type: BERT, as
    load_teacher reads it)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    declared, model_type, config_file = read_config_json(path)
    adapter_for_type(model_type, where=str(config_file))  # an architecture the table serves
    return CONFIG_MAPPING[model_type].from_json_file(str(config_file)), declared


def load_classifier(path: str | Path) -> nn.Module:
    """A fine-tuned …ForSequenceClassification from a local folder, in eval mode: the teacher of task
    sequence-classification. A folder without trained head weights (a masked-LM model, a bare encoder) is
    a ValueError saying what the folder holds."""
    from transformers import AutoModelForSequenceClassification

    path = Path(path)
    config, declared = _config_of(path)
    with refusing_code(path):  # a hostile pickle: one line naming the file
        model, info = AutoModelForSequenceClassification.from_pretrained(str(path), config=config,
                                                                         output_loading_info=True)
    check_classifier(model)
    fresh = list(info.get("missing_keys", [])) + [m[0] if isinstance(m, tuple) else m
                                                  for m in info.get("mismatched_keys", [])]
    if fresh:
        holds = (declared.get("architectures") or ["(config.json names no architecture)"])[0]
        raise ValueError(f"{path} is not a fine-tuned classifier: its weights lack {len(fresh)} tensors of a "
                         f"{type(model).__name__} (e.g. {sorted(fresh)[0]}); config.json says it holds a {holds}. "
                         "The teacher of task sequence-classification is a fine-tuned …ForSequenceClassification "
                         "folder; to distil a masked-LM model use --task masked-lm")
    return model.eval()


def init_classifier_student(teacher, n_layers: int | None = None, layers: list[int] | None = None, *,
                            hidden: int | None = None, heads: int | None = None, intermediate: int | None = None,
                            init: str = "teacher", selection: str = "uniform", seed: int = 0) -> nn.Module:
    """A shallower copy of a fine-tuned classifier `teacher` (a model or a folder): its own class, student
    layer i = teacher layer layers[i] (default: half the layers, spread as init_student spreads them), the
    embeddings and the classification head copied; hidden / heads / intermediate: a narrower shape made by
    `init` ("teacher", "weight-selection" or "random"; see init_student). fp32, train mode."""
    from .shapes import ShapeRequest, shaped_student

    if isinstance(teacher, (str, Path)):
        teacher = load_classifier(teacher)
    check_classifier(teacher)
    adapter = encoder_adapter(teacher)
    layers = kept_layers(len(adapter.layers(teacher)), n_layers, layers)
    with torch.no_grad():
        student = same_class_fewer_layers(teacher, layers, getattr(teacher.config, "tie_word_embeddings", True),
                                          adapter)
    student.config.distilx_teacher_layers = layers  # provenance, saved in config.json
    return shaped_student(student.float().train(), ShapeRequest(hidden, heads, intermediate), init=init,
                          selection=selection, seed=seed)


def pretrained_classifier_student(path: str | Path, teacher: nn.Module) -> nn.Module:
    """"Distil while fine-tuning": a classifier for the teacher's labels whose encoder comes from a
    pre-trained (not fine-tuned) folder, e.g. a masked-LM student written by `distilx train`.

    The tensors the folder lacks — the classification head, and BERT's pooler, which masked-LM models do
    not have — are copied from the teacher when the student is of the teacher's own class (the same head
    layout) and the tensor has the same name and shape; otherwise they keep transformers' fresh
    initialisation (e.g. a DistilBERT student of a BERT teacher: its classifier reads pre_classifier +
    ReLU, not BERT's tanh pooler, so even the same-shaped `classifier` would be a wrong start). The names of
    the copied tensors are recorded in the config (`distilx_head_from_teacher`). fp32, train mode.
    """
    from transformers import AutoModelForSequenceClassification

    path = Path(path)
    config, _ = _config_of(path)
    config.id2label = dict(teacher.config.id2label)
    config.label2id = dict(teacher.config.label2id)
    config.problem_type = "single_label_classification"
    with refusing_code(path):
        student, info = AutoModelForSequenceClassification.from_pretrained(
            str(path), config=config, output_loading_info=True, ignore_mismatched_sizes=True)
    check_classifier(student, role="student")
    fresh = set(info.get("missing_keys", [])) | {m[0] if isinstance(m, tuple) else m
                                                 for m in info.get("mismatched_keys", [])}
    teacher_state = teacher.state_dict() if type(student) is type(teacher) else {}
    copied = []
    with torch.no_grad():
        for name, tensor in student.state_dict().items():
            source = teacher_state.get(name)
            if name in fresh and source is not None and source.shape == tensor.shape:
                tensor.copy_(source)
                copied.append(name)
    student.config.distilx_head_from_teacher = sorted(copied)
    return student.float().train()


def forward_inputs(model: nn.Module, batch: dict) -> dict:
    """The entries of `batch` that `model`'s forward takes, labels excluded (distilx computes the loss
    itself): e.g. a DistilBERT student is not given the token_type_ids its BERT teacher reads."""
    accepted = inspect.signature(model.forward).parameters
    return {k: v for k, v in batch.items() if k in accepted and k != "labels"}
