"""Fine-tuned task models: a teacher with a task head, its students, and what each head computes.

A task head class (…ForSequenceClassification, …ForTokenClassification) reaches its encoder the way its
…ForMaskedLM sibling does, so the adapter table (adapters.py) serves it through `encoder_adapter`, and
its head needs no entry of its own: a student is the teacher's own class with fewer layers
(`builders.same_class_fewer_layers`), so every tensor outside the layer stack — the embeddings and the
whole head — is copied, and keeping every layer reproduces the teacher's logits.

`HeadKind` is what differs between head families (the transformers class, the task that takes it, the
noun for messages); `load`, `init_student` and `pretrained_student` are the same for every family.
`head_problem(model)` names what a model's logits mean, for the losses (losses/heads.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..losses.heads import MASKED_LM, MULTI_LABEL, REGRESSION, SINGLE_LABEL, SPANS, TOKENS
from ..safe_loading import refusing_code
from .adapters import UnsupportedModelError, adapter_for_type, encoder_adapter
from .builders import same_class_fewer_layers
from .loading import read_config_json
from .student import kept_layers

__all__ = ["warn_if_untrained", "fresh_tensors", "head_from_teacher", "fewer_layers", "HeadKind",
           "SEQUENCE_CLASSIFICATION", "TOKEN_CLASSIFICATION", "head_problem", "config_of", "SINGLE_LABEL",
           "MULTI_LABEL", "REGRESSION", "TOKENS", "MASKED_LM", "SPANS", "PROBLEMS", "problem_of"]

PROBLEMS = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)  # a …ForSequenceClassification's


def problem_of(config) -> str:
    """A sequence classifier's problem type as transformers decides it: config.problem_type when set,
    else regression for one output and single-label classification otherwise."""
    if config.problem_type is not None:
        return config.problem_type
    return REGRESSION if config.num_labels == 1 else SINGLE_LABEL


def config_of(path: Path):
    """The config.json of a model folder, read as its model_type's config class (no model_type: BERT, as
    load_teacher reads it), and what it declares."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    declared, model_type, config_file = read_config_json(path)
    adapter_for_type(model_type, where=str(config_file))  # an architecture the table serves
    return CONFIG_MAPPING[model_type].from_json_file(str(config_file)), declared


def fresh_tensors(info: dict) -> set[str]:
    """The tensors from_pretrained initialised instead of loading (missing, or of another shape)."""
    return set(info.get("missing_keys", [])) | {m[0] if isinstance(m, tuple) else m
                                                for m in info.get("mismatched_keys", [])}


def head_from_teacher(student: nn.Module, fresh: set[str], teacher: nn.Module) -> list[str]:
    """Copy into `student` each of its `fresh` tensors that the teacher has under the same name and shape, when
    the two are of one class (the same head layout; otherwise the fresh initialisation stays: another head's
    same-shaped matrix would be a wrong start). The copied names are recorded in the student's config
    (`distilx_head_from_teacher`) and returned."""
    teacher_state = teacher.state_dict() if type(student) is type(teacher) else {}
    copied = []
    with torch.no_grad():
        for name, tensor in student.state_dict().items():
            source = teacher_state.get(name)
            if name in fresh and source is not None and source.shape == tensor.shape:
                tensor.copy_(source)
                copied.append(name)
    student.config.distilx_head_from_teacher = sorted(copied)
    return copied


def fewer_layers(teacher: nn.Module, n_layers: int | None, layers: list[int] | None, **shape) -> nn.Module:
    """A fine-tuned `teacher`'s own class with fewer layers (`builders.same_class_fewer_layers`): student layer
    i = teacher layer layers[i] (default: half, spread as init_student spreads them), every tensor outside the
    layer stack — embeddings and the whole head — copied; `shape` (hidden, heads, intermediate, init,
    selection, seed) narrows it as `shapes.shaped_student` does, the head's hidden units selected too.
    fp32, train mode."""
    from .shapes import ShapeRequest, shaped_student

    adapter = encoder_adapter(teacher)
    layers = kept_layers(len(adapter.layers(teacher)), n_layers, layers)
    with torch.no_grad():
        student = same_class_fewer_layers(teacher, layers, getattr(teacher.config, "tie_word_embeddings", True),
                                          adapter)
    student.config.distilx_teacher_layers = layers  # provenance, saved in config.json
    request = ShapeRequest(shape.pop("hidden", None), shape.pop("heads", None), shape.pop("intermediate", None))
    return shaped_student(student.float().train(), request, **shape)


@dataclass(frozen=True)
class HeadKind:
    """One family of head classes: `suffix` names it (…ForTokenClassification), `auto` is its transformers
    Auto class, `mapping` the model_type -> class name table, `task` the distilx task that takes it and
    `noun` what a fine-tuned one is called in messages."""

    task: str
    suffix: str
    auto: str
    mapping: str
    noun: str

    def _auto_class(self):
        import transformers

        return getattr(transformers, self.auto)

    def expected_class(self, model_type) -> str | None:
        from transformers.models.auto import modeling_auto

        return getattr(modeling_auto, self.mapping).get(model_type)

    def check(self, model: nn.Module, role: str = "teacher") -> None:
        """Raise unless `model` is the …{suffix} class of its model type."""
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        expected = self.expected_class(model_type)
        if expected is None or type(model).__name__ != expected:
            raise UnsupportedModelError(f"the {role} is a {type(model).__name__}: task {self.task} takes a "
                                        f"…{self.suffix} ({expected or 'none exists for model_type ' + repr(model_type)})")

    def load(self, path: str | Path, check: Callable[[nn.Module, str], None], role: str = "teacher") -> nn.Module:
        """A fine-tuned model of this family from a local folder, in eval mode, passed through `check(model,
        role)`. A folder without trained head weights (a masked-LM model, a bare encoder) or holding another
        head is a ValueError saying what the folder holds and naming the role."""
        path = Path(path)
        config, declared = config_of(path)
        with refusing_code(path):  # a hostile pickle: one line naming the file
            model, info = self._auto_class().from_pretrained(str(path), config=config, output_loading_info=True)
        check(model, role)
        fresh = fresh_tensors(info)
        holds = (declared.get("architectures") or ["(config.json names no architecture)"])[0]
        other_head = bool(declared.get("architectures")) and not holds.endswith(self.suffix)
        if fresh or other_head:  # another head's weights may fit this one's shapes: config.json tells them apart
            lacks = (f"its weights lack {len(fresh)} tensors of a {type(model).__name__} (e.g. {sorted(fresh)[0]}); "
                     if fresh else "")
            fix = (f"The teacher of task {self.task} is a fine-tuned …{self.suffix} folder: fine-tune one from this "
                   f"encoder with `distilx finetune --task {self.task} --model {path} --train-files ...` "
                   "(docs/tasks.md); to distil a masked-LM model use --task masked-lm" if role == "teacher" else
                   f"Evaluate a student trained with --task {self.task} (a masked-LM student: --task masked-lm)")
            raise ValueError(f"the {role} {path} is not a fine-tuned {self.noun}: {lacks}config.json says it holds a "
                             f"{holds}. {fix}")
        return model.eval()

    def init_student(self, teacher: nn.Module, n_layers: int | None = None, layers: list[int] | None = None,
                     **shape) -> nn.Module:
        """A shallower (and with `shape`, narrower) copy of a fine-tuned `teacher` model (fewer_layers)."""
        return fewer_layers(teacher, n_layers, layers, **shape)

    def pretrained_student(self, path: str | Path, teacher: nn.Module, check: Callable[[nn.Module], None]
                           ) -> nn.Module:
        """"Distil while fine-tuning": a model of this family for the teacher's labels whose encoder comes
        from a pre-trained (not fine-tuned) folder, e.g. a masked-LM student written by `distilx train`.

        The tensors the folder lacks (the head, BERT's pooler…) are copied from the teacher when the student
        is of the teacher's class and the tensor has the same name and shape; otherwise they keep
        transformers' fresh initialisation. Their names are recorded in the config
        (`distilx_head_from_teacher`). fp32, train mode."""
        path = Path(path)
        config, _ = config_of(path)
        config.id2label = dict(teacher.config.id2label)
        config.label2id = dict(teacher.config.label2id)
        config.problem_type = teacher.config.problem_type
        with refusing_code(path):
            student, info = self._auto_class().from_pretrained(str(path), config=config, output_loading_info=True,
                                                               ignore_mismatched_sizes=True)
        check(student)
        head_from_teacher(student, fresh_tensors(info), teacher)
        return student.float().train()


SEQUENCE_CLASSIFICATION = HeadKind("sequence-classification", "ForSequenceClassification",
                                   "AutoModelForSequenceClassification",
                                   "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES", "classifier")
TOKEN_CLASSIFICATION = HeadKind("token-classification", "ForTokenClassification", "AutoModelForTokenClassification",
                                "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES", "token classifier")


def warn_if_untrained(model: nn.Module) -> None:
    """Warn when the head's output bias (the [num_labels] bias outside the encoder) is exactly 0, as
    transformers initialises it and as no training step leaves it: a model saved without being fine-tuned,
    whose logits are noise a student would learn."""
    import warnings

    base = model.base_model_prefix + "."
    biases = [(name, p) for name, p in model.named_parameters()
              if not name.startswith(base) and name.endswith("bias") and tuple(p.shape) == (model.config.num_labels,)]
    if biases and all(not p.detach().any() for _, p in biases):
        warnings.warn(f"the teacher's classification head looks untrained: its output bias ({biases[-1][0]}) is "
                      "exactly 0, as transformers initialises it and as fine-tuning does not leave it; distilling an "
                      "untrained teacher teaches noise: fine-tune it first", stacklevel=3)


def head_problem(model: nn.Module) -> str:
    """What `model`'s logits mean: TOKENS (a …ForTokenClassification: [B, L, C]), a sequence classifier's
    problem_of ([B, C], or [B, 1] for regression), SPANS (a …ForQuestionAnswering: start and end logits
    [B, L]), else MASKED_LM ([B, L, V])."""
    name = type(model).__name__
    if name.endswith("ForQuestionAnswering"):
        return SPANS
    if name.endswith(TOKEN_CLASSIFICATION.suffix):
        return TOKENS
    if name.endswith(SEQUENCE_CLASSIFICATION.suffix):
        return problem_of(model.config)
    return MASKED_LM
