"""Held-out evaluation of a teacher and its student on the same masked batches.

Metrics (all on the masked-LM targets, i.e. labels != -100, of the same batches and masks):
- `*_accuracy`: top-1 masked-token accuracy;
- `*_perplexity`: exp(mean cross-entropy) over the targets (masked-LM pseudo-perplexity);
- `top1_agreement`: share of targets where student and teacher predict the same token;
- `kl_to_teacher`: mean over the targets of KL(teacher || student) of the two softmaxes (T = 1, nats):
  how far the student's whole distribution is from the teacher's, which moves long before top-1 does;
- `masking`: how the targets were drawn ("uniform" 15% by default; "frequency" with the training
  corpus' token counts gives the masking a default run trains with, so its perplexity is comparable);
- `*_params`: parameter counts (tied tensors counted once); `*_layers`: encoder layers; `*_hidden`,
  `*_heads`, `*_intermediate`: the rest of the shape (models/shapes.py; None outside the width table);
- `speed_ratio`: student forward time / teacher forward time for full `model(...).logits` calls on
  the same batches, measured in this run (`speedup` = its inverse).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .losses import IGNORE_INDEX
from .models import adapter_for, check_vocabulary, load_teacher
from .report import model_facts

__all__ = ["evaluate", "eval_stream", "count_parameters", "forward_seconds", "autocast_for", "model_folders",
           "shape_entries"]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # .parameters() yields a tied tensor once


def shape_entries(teacher: nn.Module, student: nn.Module) -> dict:
    """teacher_/student_ hidden, heads and intermediate: what a (narrower) student is, beside its layers."""
    from .models.shapes import model_shape

    return {f"{role}_{key}": value for role, model in (("teacher", teacher), ("student", student))
            for key, value in model_shape(model).items()}


def autocast_for(device: torch.device):
    """bf16 autocast on GPU (how distilx runs models there), nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def forward_seconds(teacher: nn.Module, student: nn.Module, batches: list[dict], device: torch.device
                    ) -> tuple[float, float]:
    """Median seconds of one full forward of `teacher` and of `student` over `batches` (dicts of model
    inputs, each model given those its forward takes), the two interleaved so that machine noise hits
    both alike."""
    from .models.classification import forward_inputs

    times: dict[int, list[float]] = {0: [], 1: []}
    for batch in batches:
        for i, model in enumerate((teacher, student)):
            inputs = forward_inputs(model, batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            with autocast_for(device):
                model(**inputs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[i].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def _load_model(model, role: str) -> nn.Module:
    if not isinstance(model, (str, Path)):
        return model
    try:
        return load_teacher(model)
    except ValueError as exc:  # load_teacher words it for a teacher
        raise type(exc)(f"the {role}: {exc}") from None


def model_folders(teacher, student, tokenizer) -> dict:
    """check_vocabulary's folder arguments for models and a tokenizer given as paths (or objects: None)."""
    def path(x):
        return x if isinstance(x, (str, Path)) else None

    return dict(teacher_folder=path(teacher), student_folder=path(student), tokenizer_source=path(tokenizer))


def check_output_file(path, what: str) -> None:
    """Raise (OSError naming `what`, e.g. "--predictions") unless a file can be written at `path`: checked
    before an evaluation, so that a typo costs no evaluation and no traceback after it."""
    import os

    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder: give the path of a file to write")
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise PermissionError(f"{what} {path} cannot be written (permission denied, or a read-only file system)")


def eval_stream(files, tokenizer, *, seq_len: int, batch_size: int, seed: int, masking: str = "uniform",
                token_counts=None):
    """The held-out batches `evaluate` reads: 15% masks drawn with `seed` (uniform, or frequency-smoothed
    with `token_counts`), so runs compare."""
    from .data import MaskedLMStream

    return MaskedLMStream([str(f) for f in files], tokenizer, seq_len=seq_len, batch_size=batch_size,
                          masking=masking, seed=seed, token_counts=token_counts)


class _Side:
    """One model's MLM head applied to the target rows' hidden states."""

    def __init__(self, adapter, model: nn.Module, hidden: torch.Tensor):
        self.weight, self.bias = adapter.decoder(model)
        self.head_input = adapter.head_transform(model, hidden)

    def logits(self, rows: slice) -> torch.Tensor:
        return F.linear(self.head_input[rows], self.weight, self.bias).float()


def _compare_heads(teacher: _Side, student: _Side, target: torch.Tensor) -> dict:
    """Both heads projected onto the vocabulary a chunk of rows at a time (the fused-linear loss's chunk
    rule, so a 250k vocabulary never holds n x V logits): correct top-1 of each, agreements, summed
    cross-entropies and summed KL(teacher || student)."""
    from .losses.fused_linear import fused_linear_chunk_rows

    n = target.shape[0]
    chunk = fused_linear_chunk_rows(max(1, n), max(teacher.weight.shape[0], student.weight.shape[0]),
                                    device=target.device, student_dtype=torch.float32, teacher_dtype=torch.float32)
    out = {"teacher_correct": 0, "student_correct": 0, "agree": 0, "teacher_nll": 0.0, "student_nll": 0.0, "kl": 0.0}
    for start in range(0, n, chunk):
        rows, gold = slice(start, start + chunk), target[start:start + chunk]
        t_logp = F.log_softmax(teacher.logits(rows), -1)
        s_logp = F.log_softmax(student.logits(rows), -1)
        t_top, s_top = t_logp.argmax(-1), s_logp.argmax(-1)
        out["teacher_correct"] += int((t_top == gold).sum())
        out["student_correct"] += int((s_top == gold).sum())
        out["agree"] += int((t_top == s_top).sum())
        out["teacher_nll"] += float(F.nll_loss(t_logp, gold, reduction="sum"))
        out["student_nll"] += float(F.nll_loss(s_logp, gold, reduction="sum"))
        out["kl"] += float(F.kl_div(s_logp, t_logp, log_target=True, reduction="sum"))
    return out


@torch.no_grad()
def evaluate(teacher, student, files, tokenizer=None, *, seq_len: int = 128, batch_size: int = 32,
             max_batches: int = 20, seed: int = 0, device: str | torch.device = "cpu",
             speed_batches: int = 3, masking: str = "uniform", token_counts=None) -> dict:
    """Evaluate `teacher` and `student` (models or folders) on held-out `files`; returns a dict.

    tokenizer: a distilx.Tokenizer or a path (default: the student's folder, else the teacher's).
    The masks are drawn by the data engine with `seed` (15%; `masking` "uniform", or "frequency" with
    `token_counts`, e.g. `distilx.data.count_tokens` of the training files), so runs are comparable.
    """
    from .data import Tokenizer
    from .preflight import check_positions

    folders = model_folders(teacher, student, tokenizer)
    if tokenizer is None:
        source = student if isinstance(student, (str, Path)) else teacher
        if not isinstance(source, (str, Path)):
            raise ValueError("evaluate needs `tokenizer` when both models are passed as objects")
        tokenizer = source
    if isinstance(tokenizer, (str, Path)):
        tokenizer = Tokenizer(str(tokenizer))
    if isinstance(files, (str, Path)):
        files = [files]
    device = torch.device(device)
    teacher, student = _load_model(teacher, "teacher"), _load_model(student, "student")
    t_adapter, s_adapter = adapter_for(teacher), adapter_for(student)
    check_vocabulary(tokenizer, teacher=teacher, student=student, **folders)
    check_positions(seq_len, teacher=teacher, student=student)
    was_training = student.training
    teacher.eval().to(device)
    student.eval().to(device)
    amp = autocast_for(device)
    stream = eval_stream(files, tokenizer, seq_len=seq_len, batch_size=batch_size, seed=seed, masking=masking,
                         token_counts=token_counts)
    totals = {"targets": 0, "teacher_correct": 0, "student_correct": 0, "agree": 0,
              "teacher_nll": 0.0, "student_nll": 0.0, "kl": 0.0}
    kept = []  # a few batches for the speed measurement
    for i, batch in enumerate(stream):
        if i >= max_batches:
            break
        ids = batch["input_ids"].to(device)
        mask = batch["attention_mask"].to(device)
        labels = batch["labels"].to(device)
        rows = labels != IGNORE_INDEX
        target = labels[rows]
        with amp:
            batch_totals = _compare_heads(_Side(t_adapter, teacher, t_adapter.last_hidden(teacher, ids, mask)[rows]),
                                          _Side(s_adapter, student, s_adapter.last_hidden(student, ids, mask)[rows]),
                                          target)
        totals["targets"] += int(target.numel())
        for key, value in batch_totals.items():
            totals[key] += value
        if len(kept) < speed_batches:
            kept.append({"input_ids": ids, "attention_mask": mask})
    n = totals["targets"]
    if n == 0:
        raise ValueError(f"no masked targets in {list(files)}: the held-out files are empty or too short")

    t_time, s_time = forward_seconds(teacher, student, kept, device)
    if was_training:
        student.train()
    return {
        "task": "masked-lm",
        "targets": n,
        "masking": masking,
        "teacher_accuracy": totals["teacher_correct"] / n,
        "student_accuracy": totals["student_correct"] / n,
        "teacher_perplexity": math.exp(totals["teacher_nll"] / n),
        "student_perplexity": math.exp(totals["student_nll"] / n),
        "top1_agreement": totals["agree"] / n,
        "kl_to_teacher": totals["kl"] / n,
        **model_facts(teacher_params=count_parameters(teacher), student_params=count_parameters(student),
                      teacher_layers=len(t_adapter.layers(teacher)), student_layers=len(s_adapter.layers(student)),
                      teacher_forward_s=t_time, student_forward_s=s_time, shape=shape_entries(teacher, student)),
    }
