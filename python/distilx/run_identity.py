"""What makes a checkpoint belong to a configuration, and every way two configurations differ.

`--resume` continues a run only with what defines it unchanged: the teacher's weights, the tokenizer,
the corpus, the student's shape and every TrainConfig setting except the few a resume may change
(`RESUMABLE`: how long to train, how often to log and save, where the folder is, which hardware,
the evaluation). Each checkpoint stores its run's identity (checkpoint.py's owner.json); a resume
compares it with the current one and names every difference instead of mixing two runs.

Digests: the teacher's config.json and weight files (or, for a teacher passed as a module, its
tensors) and the tokenizer file are hashed whole; corpus files are hashed by size plus their first,
middle and last MiB (corpora reach many GB; an edit that keeps the size and spares those three
stretches goes unnoticed).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from .checkpoint import file_sha256, newest_intact_checkpoint

__all__ = ["RESUMABLE", "run_identity", "identity_differences", "resume_point"]

# TrainConfig fields a resume may change; every other field (including fields added later) must match.
RESUMABLE = frozenset({
    "output_dir", "resume", "overwrite_output_dir",  # where the run lives and how it was started
    "max_steps", "epochs",  # train longer or shorter (the schedule is re-planned: distilx.schedule)
    "log_every", "save_every", "keep_last", "max_nonfinite", "progress", "tensorboard",  # run control
    "preempt_signals", "time_limit", "time_limit_margin",  # how a cluster job stops (distilx.preemption)
    "device", "precision", "loss_backend", "fused_linear", "data_threads",  # hardware, computation paths
    "grad_accum",  # e.g. doubled on half the processes, keeping the effective batch (distilx.resharding)
    "eval_files", "eval_batches",  # the end-of-run evaluation
})

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_SAMPLE = 1 << 20


def _sampled_sha256(path: Path) -> str:
    """sha256 of the size and the first, middle and last MiB (the whole file when it is small)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for start in sorted({0, max(0, size // 2 - _SAMPLE // 2), max(0, size - _SAMPLE)}):
            f.seek(start)
            digest.update(f.read(_SAMPLE))
    return digest.hexdigest()


def _teacher_digest(teacher: nn.Module | str | os.PathLike) -> str:
    digest = hashlib.sha256()
    if isinstance(teacher, nn.Module):
        for name, tensor in teacher.state_dict().items():
            t = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy())
        return digest.hexdigest()
    folder = Path(teacher)
    files = sorted(p for p in folder.iterdir() if p.is_file() and (
        p.name == "config.json" or p.name.endswith(".index.json") or p.suffix in _WEIGHT_SUFFIXES))
    for p in files:
        digest.update(f"{p.name}:{file_sha256(p)}".encode())
    return digest.hexdigest()


def run_identity(settings: dict, teacher: nn.Module | str | os.PathLike, student: nn.Module,
                 tokenizer_file: str | os.PathLike, corpus_files: list[str]) -> dict:
    """The identity of a run: `settings` (TrainConfig.to_dict()) minus RESUMABLE, and content digests."""
    return {
        "settings": {k: v for k, v in sorted(settings.items()) if k not in RESUMABLE},
        "teacher": _teacher_digest(teacher),
        "student": {"class": type(student).__name__,
                    "shapes": {k: list(v.shape) for k, v in student.state_dict().items()}},
        "tokenizer": file_sha256(Path(tokenizer_file)),
        "corpus": [[os.fspath(f), _sampled_sha256(Path(f))] for f in corpus_files],
    }


def _student_difference(old: dict, new: dict) -> str:
    if old.get("class") != new.get("class"):
        return f"student: a {old.get('class')} in the checkpoint, a {new.get('class')} now"
    a, b = old.get("shapes", {}), new.get("shapes", {})
    name = next((k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)), None)
    return (f"student shape: {len(a)} tensors in the checkpoint, {len(b)} now; first difference {name}: "
            f"{a.get(name)} vs {b.get(name)}")


def _corpus_difference(old: list, new: list) -> str:
    old_paths, new_paths = [p for p, _ in old], [p for p, _ in new]
    if old_paths != new_paths:
        return f"corpus files: {old_paths} in the checkpoint, {new_paths} now"
    changed = [p for (p, a), (_, b) in zip(old, new) if a != b]
    return f"corpus content changed since the checkpoint: {changed}"


def identity_differences(recorded: dict, current: dict) -> list[str]:
    """One line per difference between a checkpoint's identity and the current run's ([] if none)."""
    out = []
    old, new = recorded.get("settings", {}), current["settings"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out.append(f"{key}: {old.get(key)!r} in the checkpoint, {new.get(key)!r} now")
    if recorded.get("teacher") != current["teacher"]:
        out.append("teacher: its weights or config.json differ from the checkpoint's teacher")
    if recorded.get("tokenizer") != current["tokenizer"]:
        out.append("tokenizer: the file's content differs from the checkpoint's tokenizer")
    if recorded.get("student") != current["student"]:
        out.append(_student_difference(recorded.get("student", {}), current["student"]))
    if recorded.get("corpus") != current["corpus"]:
        out.append(_corpus_difference(recorded.get("corpus", []), current["corpus"]))
    return out


def resume_point(root: str | os.PathLike, run_id: str, identity: dict) -> Path | None:
    """The checkpoint a resume continues from: the newest intact one of run `run_id` (falling back
    past damaged ones, see checkpoint.newest_intact_checkpoint), after checking that it was written
    by this configuration. None when there is none; ValueError naming every difference otherwise."""
    found = newest_intact_checkpoint(root, run_id)
    if found is None:
        return None
    path, owner = found
    differences = identity_differences(owner.get("identity") or {}, identity)
    if differences:
        raise ValueError(f"cannot resume from {path}: it was written by another configuration: "
                         + "; ".join(differences) + ". Resume with that checkpoint's settings, or start a new run "
                         "(another --output-dir, or --overwrite-output-dir)")
    return path
