"""TrainConfig: every knob of a distillation run in one documented dataclass.

Load it from a TOML (or JSON, or YAML when PyYAML is installed) file with `TrainConfig.load`,
override fields with `TrainConfig.override({"lr": 1e-4})` (what the CLI flags do), and save the
resolved config next to the outputs with `save`. Defaults are the reference DistilBERT recipe
(REFERENCE.md) except where a comment says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    # --- what to distil ---
    teacher: str = ""  # folder of a BERT / RoBERTa masked-LM teacher (config.json + weights)
    tokenizer: str | None = None  # tokenizer.json, vocab.txt or folder; None = the teacher's folder
    train_files: list[str] = field(default_factory=list)  # corpus files, one document per line
    eval_files: list[str] = field(default_factory=list)  # held-out files for the end-of-run evaluation
    output_dir: str = "distilx-run"  # student, tokenizer, config, metrics, plots and checkpoints go here

    # --- the student ---
    student_layers: int | None = None  # layers to keep; None = half the teacher's (rounded up)
    student_layer_indices: list[int] | None = None  # explicit teacher layers to copy (overrides student_layers)
    student_init: str = "teacher"  # "teacher" (copy kept layers) or "random" (same shape, fresh weights: ablation)

    # --- data (the Rust engine does masking, padding and batching) ---
    seq_len: int = 128  # tokens per sequence, [CLS] and [SEP] included
    batch_size: int = 32  # sequences per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step (effective batch = batch_size*grad_accum*world)
    masking: str = "uniform"  # "uniform" (BERT style), "frequency" (reference's smoothed counts) or "whole_word"
    mlm_probability: float = 0.15  # share of real tokens that become prediction targets
    padding: str = "dynamic"  # "dynamic" pads to the longest sequence in the batch, "fixed" to seq_len
    packing: bool = False  # pack several documents into one sequence (fewer pad tokens)
    data_threads: int | None = None  # tokenizer/engine threads; None = the engine's default

    # --- the loss (REFERENCE.md: T=2, 5/2/1) ---
    temperature: float = 2.0  # softmax temperature of the KL term (the KL is scaled by T^2)
    alpha_kl: float = 5.0  # weight of KL(teacher || student)
    alpha_mlm: float = 2.0  # weight of the student's masked-LM cross-entropy
    alpha_cos: float = 1.0  # weight of 1 - cos(h_student, h_teacher) on the last hidden states
    kl_on: str = "tokens"  # "tokens": every real token (reference); "targets": masked positions only (much cheaper on CPU)
    loss_backend: str = "auto"  # "auto" (Triton on GPU, PyTorch elsewhere), "triton" or "torch"

    # --- optimisation (REFERENCE.md: AdamW 5e-4, betas 0.9/0.98, eps 1e-6, warmup 5%, clip 5) ---
    lr: float = 5e-4  # peak learning rate
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.98])  # AdamW betas
    adam_eps: float = 1e-6  # AdamW epsilon
    weight_decay: float = 0.0  # AdamW decay; never applied to biases and LayerNorm weights
    warmup_ratio: float = 0.05  # share of the optimizer steps with linear warmup, then linear decay to 0
    max_grad_norm: float = 5.0  # gradient-norm clip; 0 disables clipping
    max_steps: int | None = None  # optimizer steps; None = `epochs` passes over the corpus
    epochs: int = 3  # passes over the corpus when max_steps is None
    seed: int = 56  # seeds the student init (random), dropout and the masking

    # --- hardware ---
    device: str = "auto"  # "auto" (cuda:LOCAL_RANK when available, else cpu), "cpu" or "cuda"
    precision: str = "auto"  # "auto" (bf16 autocast on GPU, fp32 on CPU), "bf16", "fp16" or "fp32"

    # --- run control and outputs ---
    log_every: int = 10  # optimizer steps between metric lines (progress bar updates every step)
    save_every: int = 500  # optimizer steps between checkpoints (one is always written at the end)
    keep_last: int = 3  # checkpoints kept on disk; older ones are deleted
    max_nonfinite: int = 10  # consecutive non-finite steps (skipped) before the run stops with an error
    resume: bool = False  # continue from the newest checkpoint in output_dir/checkpoints
    overwrite_output_dir: bool = False  # replace an earlier run in output_dir (deletes only the files that run wrote)
    eval_batches: int = 20  # held-out batches evaluated at the end (0 skips the evaluation)
    progress: bool = True  # show a progress bar on rank 0
    tensorboard: bool = True  # also log to output_dir/tensorboard when tensorboard is installed

    # ---------------------------------------------------------------- helpers
    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a .toml, .json or .yaml/.yml file (unknown keys are an error)."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                try:
                    import tomli as tomllib
                except ModuleNotFoundError as exc:
                    raise ModuleNotFoundError("reading TOML on Python 3.10 needs `pip install tomli` "
                                              "(or use a .json config)") from exc
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ModuleNotFoundError as exc:
                raise ModuleNotFoundError("YAML configs need `pip install pyyaml` (or use .toml)") from exc
            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:  # e.g. a !!python/... tag, which safe_load refuses to construct
                raise ValueError(f"config {path}: refused: {_yaml_problem(exc)}") from None
        else:
            raise ValueError(f"config {path}: unknown extension {path.suffix!r}; use .toml, .json or .yaml")
        if "train" in data and isinstance(data["train"], dict):  # allow a [train] table
            data = data["train"]
        return cls().override(data)

    def override(self, values: dict) -> "TrainConfig":
        """A copy with `values` applied; strings are converted to the field's type (CLI flags)."""
        known = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        hints = typing.get_type_hints(type(self))
        changes = {k: _coerce(k, v, hints[k]) for k, v in values.items()}
        return dataclasses.replace(self, **changes).validated()

    def validated(self) -> "TrainConfig":
        """Check values that would otherwise fail deep inside the run; returns self."""
        choices = {"student_init": ("teacher", "random"), "kl_on": ("tokens", "targets"),
                   "masking": ("uniform", "frequency", "whole_word"), "padding": ("dynamic", "fixed"),
                   "device": ("auto", "cpu", "cuda"), "precision": ("auto", "bf16", "fp16", "fp32"),
                   "loss_backend": ("auto", "triton", "torch")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed and not (name == "device" and str(self.device).startswith("cuda:")):
                raise ValueError(f"{name}={getattr(self, name)!r}; choose one of {allowed}")
        for name in ("batch_size", "grad_accum", "seq_len", "keep_last", "max_nonfinite", "log_every", "save_every",
                     "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps} must be >= 1 (or None to train for `epochs`)")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"mlm_probability={self.mlm_probability} must be in (0, 1)")
        if len(self.adam_betas) != 2:
            raise ValueError(f"adam_betas={self.adam_betas} must hold two numbers")
        for name, (valid, text) in _VALID_RANGES.items():
            values = getattr(self, name)
            for value in values if isinstance(values, list) else [values]:
                if value is not None and not valid(value):
                    raise ValueError(f"{name}={values} is out of range: valid is {text}")
        if self.resume and self.overwrite_output_dir:
            raise ValueError("resume and overwrite_output_dir exclude each other: --resume continues the run in "
                             "output_dir, --overwrite-output-dir replaces it")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


# field: (test, the valid range in words); each value of a list field is tested; None (unset) passes.
# NaN fails every test.
_VALID_RANGES = {
    "temperature": (lambda v: 0 < v < math.inf, "> 0"),
    "lr": (lambda v: 0 < v < math.inf, "> 0"),
    "adam_betas": (lambda v: 0 <= v < 1, "[0, 1) for each beta"),
    "adam_eps": (lambda v: 0 < v < math.inf, "> 0"),
    "weight_decay": (lambda v: 0 <= v < math.inf, ">= 0"),
    "warmup_ratio": (lambda v: 0 <= v <= 1, "[0, 1] (a share of the optimizer steps)"),
    "max_grad_norm": (lambda v: 0 <= v < math.inf, ">= 0 (0 disables clipping)"),
    "alpha_kl": (lambda v: 0 <= v < math.inf, ">= 0"),
    "alpha_mlm": (lambda v: 0 <= v < math.inf, ">= 0"),
    "alpha_cos": (lambda v: 0 <= v < math.inf, ">= 0"),
    "eval_batches": (lambda v: v >= 0, ">= 0 (0 skips the evaluation)"),
    "seed": (lambda v: v >= 0, ">= 0"),
    "student_layers": (lambda v: v >= 1, ">= 1, or None for half the teacher's layers"),
    "data_threads": (lambda v: v >= 1, ">= 1, or None for the engine's default"),
}


def _yaml_problem(exc) -> str:
    """One line out of PyYAML's multi-line error: what is wrong and where."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    if "python/" in problem:
        problem += "; YAML tags that build Python objects could run code, so they are refused"
    return problem + where


def _coerce(name, value, hint):
    """Convert `value` (possibly a CLI string) to the annotated type of field `name`."""
    args = typing.get_args(hint)
    optional = type(None) in args or hint is type(None)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if not optional:
            raise ValueError(f"{name} cannot be None")
        return None
    base = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        base = next(a for a in args if a is not type(None))
    origin = typing.get_origin(base)
    try:
        if origin is list:
            (item,) = typing.get_args(base)
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            return [item(v) for v in value]
        if base is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if base is int and isinstance(value, str):
            return int(float(value)) if "e" in value.lower() else int(value)
        return base(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config field {name}: cannot read {value!r} as {hint}") from exc
