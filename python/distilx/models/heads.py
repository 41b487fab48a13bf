"""What every fine-tuned head class (sequence classification, question answering) shares: which tensors
from_pretrained had to initialise, the head a pre-trained student takes from its teacher ("distil while
fine-tuning", docs/tasks.md), and the student of the teacher's own class with fewer layers."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fresh_tensors", "head_from_teacher", "fewer_layers"]


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


def fewer_layers(teacher: nn.Module, n_layers: int | None, layers: list[int] | None) -> nn.Module:
    """A fine-tuned `teacher`'s own class with fewer layers (`builders.same_class_fewer_layers`): student layer
    i = teacher layer layers[i] (default: half, spread as init_student spreads them), every tensor outside the
    layer stack — embeddings and the whole head — copied. fp32, train mode."""
    from .adapters import encoder_adapter
    from .builders import same_class_fewer_layers
    from .student import kept_layers

    adapter = encoder_adapter(teacher)
    layers = kept_layers(len(adapter.layers(teacher)), n_layers, layers)
    with torch.no_grad():
        student = same_class_fewer_layers(teacher, layers, getattr(teacher.config, "tie_word_embeddings", True),
                                          adapter)
    student.config.distilx_teacher_layers = layers  # provenance, saved in config.json
    return student.float().train()
