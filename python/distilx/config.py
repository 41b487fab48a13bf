"""TrainConfig: every knob of a distillation run in one documented dataclass.

Load it from a TOML (or JSON, or YAML when PyYAML is installed) file with `TrainConfig.load`,
override fields with `TrainConfig.override({"lr": 1e-4})` (what the CLI flags do), and save the
resolved config next to the outputs with `save`. Defaults are the reference DistilBERT recipe
(REFERENCE.md) except where a comment says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    # The recipe's frequency-smoothed masking (weight count^-0.7; one counting pass over train_files at
    # start, docs/data.md). Its target count stays round(p x eligible tokens), the rate the other
    # modes give; data={"frequency_targets": "all_tokens"} is DistilBERT's ceil(p x all tokens).
    masking: str = "frequency"  # "frequency" (recipe), "uniform" (BERT: no counting pass) or "whole_word"
    mlm_probability: float = 0.15  # share of real tokens that become prediction targets
    padding: str = "dynamic"  # "dynamic" pads to the longest sequence in the batch, "fixed" to seq_len
    packing: bool = False  # pack several documents into one sequence (fewer pad tokens)
    data_threads: int | None = None  # tokenizer/engine threads; None = the engine's default
    # Any other MaskedLMStream option by name, e.g. {"min_seq_len": 8, "text_field": "body"}; names,
    # types, defaults and help: `distilx.data.options_help()` (from rust/options.rs). CLI: --data NAME=VALUE.
    data: dict[str, Any] = field(default_factory=dict)

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
            data = yaml.safe_load(text) or {}
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
                   "device": ("auto", "cpu", "cuda"), "precision": ("auto", "bf16", "fp16", "fp32"),
                   "loss_backend": ("auto", "triton", "torch")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed and not (name == "device" and str(self.device).startswith("cuda:")):
                raise ValueError(f"{name}={getattr(self, name)!r}; choose one of {allowed}")
        for name in ("grad_accum", "keep_last", "max_nonfinite", "log_every", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps} must be >= 1 (or None to train for `epochs`)")
        self.stream_options()  # the data fields, checked by the engine's own rules (rust/options.rs)
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be > 0")
        if len(self.adam_betas) != 2:
            raise ValueError(f"adam_betas={self.adam_betas} must hold two numbers")
        return self

    # Fields that are stream options under the same name (the others: data_threads -> num_threads,
    # and the run's rank / world size).
    _STREAM_FIELDS = ("seq_len", "batch_size", "mlm_probability", "masking", "padding", "packing", "seed")

    def stream_options(self, rank: int = 0, world_size: int = 1) -> dict:
        """The MaskedLMStream options of this run on `rank` of `world_size`: the data fields, then
        `data`; validated by the engine (ValueError naming the option)."""
        from ._native import StreamOptions

        own = {name: getattr(self, name) for name in self._STREAM_FIELDS}
        own.update(num_threads=self.data_threads, rank=rank, world_size=world_size)
        clash = sorted(set(own) & set(self.data))
        if clash:
            raise ValueError(f"data sets {clash}, which the run sets itself (TrainConfig fields, data_threads for "
                             "num_threads, the launcher for rank/world_size); set them there instead")
        options = {**own, **self.data}
        StreamOptions(**options)
        return options

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def _coerce(name, value, hint):
    """Convert `value` (possibly a CLI string) to the annotated type of field `name`."""
    if typing.get_origin(hint) is dict:
        return _stream_options(name, value)
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


def _stream_options(name: str, value) -> dict:
    """A `data` table: a dict (TOML/JSON), or CLI text "NAME=VALUE[,NAME=VALUE...]" (one string or a
    list of them), each VALUE read as the option's type in the engine's declaration."""
    if isinstance(value, dict):
        return dict(value)
    from ._native import StreamOptions

    types = {f["name"]: f["type"] for f in StreamOptions.fields()}
    out = {}
    for item in [value] if isinstance(value, str) else value:
        for pair in filter(None, (p.strip() for p in str(item).split(","))):
            key, sep, text = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ValueError(f"{name}: {pair!r} is not NAME=VALUE (e.g. --{name} min_seq_len=8)")
            kind = types.get(key, "str")  # an unknown name is reported by the engine, with the known ones
            optional = kind.startswith("Optional[")
            base = {"int": int, "float": float, "bool": bool}.get(kind.removeprefix("Optional[").removesuffix("]"), str)
            out[key] = _coerce(f"{name}.{key}", text.strip(), base | None if optional else base)
    return out
