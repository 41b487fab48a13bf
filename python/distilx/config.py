"""TrainConfig: every knob of a distillation run in one documented dataclass.

Load it from a TOML (or JSON, or YAML when PyYAML is installed) file with `TrainConfig.load`,
override fields with `TrainConfig.override({"lr": 1e-4})` (what the CLI flags do), and save the
resolved config next to the outputs with `save`. Each field is a `knob(default, help)`: its help
string is the one source of `distilx train --help` and of docs/config.md. Defaults are the DistilBERT
recipe (docs/recipe.md) except where the help says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .models.defaults import HIDDEN_LOSSES, SELECTIONS, STUDENT_CLASSES, STUDENT_INITS
from .losses.defaults import ALPHA_COS, ALPHA_KL, ALPHA_MLM, BACKENDS, KL_ON, KL_ON_CHOICES, TEMPERATURE
from .tasks import TASKS
from .tasks.records import brief

__all__ = ["TrainConfig", "knob", "config_table", "default_text"]


def knob(default, help: str, choices: tuple[str, ...] | None = None, valid: tuple | None = None):
    """A TrainConfig field with its one-line description: the single source of `distilx train --help`,
    docs/config.md (`python -m distilx.config` writes its table) and, with `choices` or `valid` (a
    range below), of validation."""
    metadata = {"help": help, "choices": choices, "valid": valid}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# Valid ranges: (test, the range in words). A list field's items are each tested; None (an unset
# optional field) passes; NaN fails every test.
POSITIVE = (lambda v: 0 < v < math.inf, "> 0")
NON_NEGATIVE = (lambda v: 0 <= v < math.inf, ">= 0")
AT_LEAST_ONE = (lambda v: v >= 1, ">= 1")
SHARE = (lambda v: 0 <= v <= 1, "in [0, 1]")
BETA = (lambda v: 0 <= v < 1, "in [0, 1)")


@dataclass
class TrainConfig:
    # --- what to distil ---
    task: str = knob("masked-lm", "'masked-lm': pre-training distillation of a masked-LM teacher on raw text; "
                     "'sequence-classification': a fine-tuned …ForSequenceClassification teacher (single-label, "
                     "multi-label or regression) on labelled .jsonl/.csv examples; 'question-answering': a fine-tuned "
                     "…ForQuestionAnswering teacher on SQuAD-layout .json/.jsonl questions; 'token-classification': a "
                     "fine-tuned …ForTokenClassification (NER, POS, chunking) on tagged .jsonl/CoNLL sentences "
                     "(docs/tasks.md)", choices=TASKS)
    teacher: str = knob("", "folder of a masked-LM teacher (config.json + weights with the MLM head): BERT, RoBERTa, "
                        "XLM-R, CamemBERT, ModernBERT, ELECTRA generator, DeBERTa-v2, DistilBERT, EuroBERT or another "
                        "encoder with one layer stack (docs/pipeline.md); for task sequence-classification a fine-tuned "
                        "…ForSequenceClassification, for question-answering a fine-tuned …ForQuestionAnswering, for "
                        "token-classification a …ForTokenClassification (docs/tasks.md)")
    tokenizer: str | None = knob(None, "tokenizer.json, vocab.txt or folder; None = the teacher's folder")
    train_files: list[str] = knob([], "masked-lm: the corpus, files, folders or globs (.txt/.jsonl, .parquet, .arrow, "
                                  "a save_to_disk folder); sequence-classification: labelled .jsonl/.csv files; "
                                  "question-answering: SQuAD-layout .json or .jsonl files; token-classification: "
                                  "tagged .jsonl or CoNLL-style files (.conll/.txt/.tsv/.iob/.iob2/.bio/.bioes)")
    eval_files: list[str] = knob([], "held-out files (same kind as train_files) for the end-of-run evaluation")
    text_fields: list[str] = knob(["text"], "sequence-classification: the field (.jsonl) or column (.csv) holding "
                                  "the text; two names for a text pair")
    label_field: str = knob("label", "sequence-classification: the field or column holding the label: a name from "
                            "the teacher's config.json id2label or its integer id; multi-label: a list of them (CSV: "
                            "joined by '|'); regression: a number")
    labels: list[str] = knob([], "sequence- and token-classification: the class names (tags) in id order. distilx "
                             "finetune: the fresh head's labels (empty: those of train_files: for sequence "
                             "classification the integers 0..max when every label is an integer, else the distinct "
                             "labels sorted as text; tags in tagged_data.tag_order); distilx train: when given, the "
                             "teacher's id2label must be these")
    multi_label_threshold: float = knob(0.5, "sequence-classification, multi-label teachers: a label is predicted when "
                                        "its sigmoid reaches this (the evaluation's micro/macro-F1)", valid=SHARE)
    tokens_field: str = knob("tokens", "token-classification, .jsonl files: the field holding the sentence's words "
                             "(a list of strings)")
    tags_field: str = knob("tags", "token-classification, .jsonl files: the field holding one tag per word (names "
                           "from the teacher's id2label, or ids); CoNLL files: the last column")
    label_all_subtokens: bool = knob(False, "token-classification: train on every sub-token of a word (its tag, a "
                                     "B- tag as its I- tag after the first piece) instead of the first sub-token only")
    tag_scheme: str = knob("auto", "token-classification evaluation: how entities are read from the tags: 'auto' "
                           "(IOBES if E-/S- tags exist, else IOB1 if a gold entity starts with I-, else IOB2; no "
                           "entities for tags such as POS tags), 'IOB1', 'IOB2', 'IOBES', or 'none' (token accuracy "
                           "only)", choices=("auto", "IOB1", "IOB2", "IOBES", "none"))
    strict_entities: bool = knob(False, "token-classification evaluation: read entities by the scheme's own rules "
                                 "(seqeval's mode='strict') instead of conlleval's (seqeval's default)")
    doc_stride: int = knob(32, "question-answering: context tokens consecutive windows of a long context share "
                           "(the Hugging Face examples use 128 with --seq-len 384)", valid=(lambda v: v >= 0, ">= 0"))
    max_query_len: int = knob(64, "question-answering: the longest question in tokens; a longer one is an error "
                              "naming it (windows keep seq_len - max_query_len - special tokens for the context)",
                              valid=AT_LEAST_ONE)
    max_answer_len: int = knob(30, "question-answering evaluation: the longest answer span decoded, in tokens",
                               valid=AT_LEAST_ONE)
    n_best_size: int = knob(20, "question-answering evaluation: start and end positions tried per window (the "
                            "highest logits)", valid=AT_LEAST_ONE)
    null_score_diff_threshold: float = knob(0.0, "question-answering evaluation, SQuAD v2.0: answer \"\" (no answer) "
                                            "when the no-answer score beats the best span's by more than this")
    squad_v2: bool | None = knob(None, "question-answering evaluation: score as SQuAD v2.0 (questions may have no "
                                 "answer; the model may answer \"\"); None = when a question of the files has none")
    output_dir: str = knob("distilx-run", "student, tokenizer, config, metrics, plots and checkpoints go here")

    # --- the student ---
    student_layers: int | None = knob(None, "layers to keep; None = half the teacher's (rounded up)",
                                      valid=AT_LEAST_ONE)
    student_layer_indices: list[int] | None = knob(None, "explicit teacher layers to copy (overrides student_layers)")
    student_class: str = knob("auto", "'auto': a BERT teacher gives a DistilBertForMaskedLM (the recipe), every other "
                              "architecture its own class with fewer layers; 'same': the teacher's own class for BERT "
                              "too (a shallower BertForMaskedLM); tasks sequence- and token-classification: always the "
                              "teacher's own class", choices=STUDENT_CLASSES)
    student_hidden: int | None = knob(None, "the student's hidden size; None = the teacher's. A narrower student needs "
                                      "--student-init weight-selection or random (docs/narrow_students.md)",
                                      valid=AT_LEAST_ONE)
    student_heads: int | None = knob(None, "the student's attention heads; None = the teacher's (with --student-hidden: "
                                     "hidden / the teacher's head size)", valid=AT_LEAST_ONE)
    student_intermediate: int | None = knob(None, "the student's feed-forward (intermediate) size; None = the teacher's",
                                            valid=AT_LEAST_ONE)
    student_config: str | None = knob(None, "a config.json giving the student's shape instead of the three flags above: "
                                      "hidden_size, num_attention_heads, intermediate_size, num_hidden_layers, "
                                      "num_key_value_heads (DistilBERT: dim, n_heads, hidden_dim, n_layers); every other "
                                      "entry must equal the teacher's")
    student_init: str = knob("teacher", "'teacher' copies the kept teacher layers whole (the teacher's width only); "
                             "'weight-selection': a sub-network of the teacher, the same subset of hidden units, heads "
                             "and intermediate units in every tensor (any narrower shape); 'random': the same shape, "
                             "fresh weights (the ablation)", choices=STUDENT_INITS)
    student_selection: str = knob("uniform", "weight-selection's units: 'uniform' (evenly spaced) or 'importance' (the "
                                  "largest by weight norm; docs/narrow_students.md)", choices=SELECTIONS)
    student: str | None = knob(None, "a pre-trained student folder to distil into instead of one initialised from "
                               "the teacher, e.g. a masked-LM student of an earlier run: 'distil while fine-tuning' "
                               "with a classifier teacher (docs/tasks.md)")
    freeze_embeddings: bool = knob(False, "keep the student's embedding layer (word, position, segment embeddings "
                                   "and their LayerNorm) fixed; on CPU the dense update of the vocabulary matrix is "
                                   "about half of a small model's step (docs/tasks.md). A tied MLM projection stays "
                                   "fixed with it")

    # --- data (masked-lm: the Rust engine does masking, padding and batching) ---
    seq_len: int = knob(128, "tokens per sequence, the framing's special tokens ([CLS]/[SEP], <s>/</s>) included")
    batch_size: int = knob(32, "sequences per micro-batch per process")
    grad_accum: int = knob(1, "micro-batches per optimizer step (effective batch = batch_size*grad_accum*world)",
                           valid=AT_LEAST_ONE)
    masking: str = knob("frequency", "masked-lm: 'frequency' (the recipe: DistilBERT's count^-0.7 smoothing, one counting pass "
                        "over train_files at start; target count round(p x eligible tokens), "
                        "data frequency_targets=all_tokens gives DistilBERT's ceil(p x all tokens)), 'uniform' "
                        "(BERT: no counting pass) or 'whole_word'")
    mlm_probability: float = knob(0.15, "masked-lm: share of real tokens that become prediction targets")
    padding: str = knob("dynamic", "'dynamic' pads to the longest sequence in the batch, 'fixed' to seq_len")
    packing: bool = knob(False, "masked-lm: pack several documents into one sequence (fewer pad tokens)")
    data_threads: int | None = knob(None, "tokenizer/engine threads; None = the engine's default")
    data: dict[str, Any] = knob({}, "masked-lm: any other MaskedLMStream option by name, e.g. min_seq_len=8,text_field=body "
                                "(CLI: --data NAME=VALUE,...); names, types, defaults and help: "
                                "distilx.data.options_help(), from rust/options.rs")

    # --- the loss (docs/recipe.md: T=2, 5/2/1) ---
    temperature: float = knob(TEMPERATURE, "softmax temperature of the KL term (the KL is scaled by T^2)",
                              valid=POSITIVE)
    alpha_kl: float = knob(ALPHA_KL, "weight of KL(teacher || student) (multi-label: the per-label binary KL; "
                           "regression: the MSE to the teacher's output)", valid=NON_NEGATIVE)
    alpha_mlm: float = knob(ALPHA_MLM, "weight of the student's cross-entropy on the gold labels: the masked tokens "
                            "(masked-lm), the class (sequence-classification: the BCE for multi-label, the MSE to the gold value for regression), the tag "
                            "(token-classification)", valid=NON_NEGATIVE)
    alpha_cos: float = knob(ALPHA_COS, "weight of 1 - cos(h_student, h_teacher) over every real token's last "
                            "hidden state; needs the teacher's width (a narrower student: --alpha-hidden)",
                            valid=NON_NEGATIVE)
    alpha_relation: float = knob(0.0, "weight of MiniLMv2's self-attention relation loss: KL(teacher || student) of "
                                 "the Q-Q, K-K and V-V relations (softmax(A·Aᵀ/√d_r) per relation head) of the teacher's "
                                 "--relation-teacher-layer and the student's last layer; bridges widths and head counts",
                                 valid=NON_NEGATIVE)
    relation_heads: int | None = knob(None, "relation heads the Q, K, V projections are re-split into; None = the "
                                      "teacher's attention heads; must divide both models' attention widths",
                                      valid=AT_LEAST_ONE)
    relation_teacher_layer: int | None = knob(None, "the teacher layer whose relations are distilled (0-based, negative "
                                              "counts from the end); None = the last (MiniLMv2 takes an upper-middle "
                                              "layer of large teachers)")
    alpha_hidden: float = knob(0.0, "weight of the last hidden states' term through a learned linear projection (student "
                               "width -> teacher width) over every real token; the projection trains with the student "
                               "and is kept in checkpoints, not in the student's folder", valid=NON_NEGATIVE)
    hidden_loss: str = knob("mse", "the projected hidden-state term: 'mse' (TinyBERT's) or 'cosine' (1 - cos)",
                            choices=HIDDEN_LOSSES)
    kl_on: str = knob(KL_ON, "masked-lm: rows of the KL term: 'tokens', every real token (DistilBERT), or 'targets', the "
                      "masked positions only (much cheaper on CPU; the cosine stays on every real token)",
                      choices=KL_ON_CHOICES)
    loss_backend: str = knob("auto", "'auto' (Triton on GPU, PyTorch elsewhere), 'triton' or 'torch'",
                             choices=BACKENDS)
    fused_linear: str = knob("auto", "masked-lm: compute the vocabulary projections chunk by chunk together with the loss, "
                             "never holding the N x V logits (large vocabularies): 'auto' when it saves memory "
                             "that matters (distilx.losses.fused_linear.fused_linear_pays), 'on' or 'off'",
                             choices=("auto", "on", "off"))

    # --- optimisation (docs/recipe.md: AdamW 5e-4, betas 0.9/0.98, eps 1e-6, warmup 5%, clip 5) ---
    lr: float = knob(5e-4, "peak learning rate", valid=POSITIVE)
    adam_betas: list[float] = knob([0.9, 0.98], "AdamW betas", valid=BETA)
    adam_eps: float = knob(1e-6, "AdamW epsilon", valid=POSITIVE)
    weight_decay: float = knob(0.0, "AdamW decay; never applied to biases and LayerNorm weights", valid=NON_NEGATIVE)
    warmup_ratio: float = knob(0.05, "share of the optimizer steps with linear warmup, then linear decay to 0",
                               valid=SHARE)
    max_grad_norm: float = knob(5.0, "gradient-norm clip; 0 disables clipping", valid=NON_NEGATIVE)
    max_steps: int | None = knob(None, "optimizer steps; None = `epochs` passes over the corpus", valid=AT_LEAST_ONE)
    epochs: int = knob(3, "passes over the corpus when max_steps is None", valid=AT_LEAST_ONE)
    seed: int = knob(56, "seeds the student init (random), dropout and the masking", valid=NON_NEGATIVE)

    # --- hardware ---
    device: str = knob("auto", "'auto' (cuda:LOCAL_RANK when available, else cpu), 'cpu', 'cuda' or 'cuda:N'")
    precision: str = knob("auto", "'auto' (bf16 autocast on GPU, fp32 on CPU), 'bf16', 'fp16' or 'fp32'",
                          choices=("auto", "bf16", "fp16", "fp32"))

    # --- run control and outputs ---
    log_every: int = knob(10, "optimizer steps between metric lines (the progress bar updates every step)",
                          valid=AT_LEAST_ONE)
    save_every: int = knob(500, "optimizer steps between checkpoints (one is always written at the end)",
                           valid=AT_LEAST_ONE)
    keep_last: int = knob(3, "checkpoints of this run kept on disk; older ones are deleted", valid=AT_LEAST_ONE)
    max_nonfinite: int = knob(10, "consecutive non-finite steps (skipped) before the run stops with an error",
                              valid=AT_LEAST_ONE)
    resume: str = knob("never", "'never': a new run (a folder holding another run is refused); 'always' (a bare "
                       "`--resume`, or true): continue the run in output_dir from its newest intact checkpoint, "
                       "refused if another configuration wrote it (every difference is named), with a warning and "
                       "step 0 when it holds none; 'auto': the same, starting fresh without a warning when there is "
                       "nothing to continue (for requeue scripts). Without --config, `--output-dir RUN --resume` "
                       "reads RUN/train_config.json (docs/pipeline.md)", choices=("never", "always", "auto"))
    overwrite_output_dir: bool = knob(False, "replace an earlier distilx run in output_dir: deletes only the files "
                                      "it wrote (`--overwrite` for short)")
    preempt_signals: list[str] = knob(["TERM", "USR1"], "signals that stop the run cleanly: at the next step "
                                      "boundary every process agrees, a checkpoint is written and `distilx train` exits "
                                      "with status 75; an empty list leaves them their default action")
    time_limit: str | None = knob(None, "stop cleanly (checkpoint, status 75) before this much time has passed since "
                                  "the job started: seconds, 90m, 12h, 2d or SLURM's H:M:S / D-H:M:S; SLURM's job end "
                                  "(SLURM_JOB_END_TIME) counts as well when it is set")
    time_limit_margin: str = knob("5m", "how long before the time limit (or the SLURM job's end) the run stops, "
                                  "beyond the longest step so far: room for the checkpoint write")
    eval_batches: int = knob(20, "held-out batches evaluated at the end (0 skips the evaluation)", valid=NON_NEGATIVE)
    progress: bool = knob(True, "show a progress bar on rank 0")
    tensorboard: bool = knob(True, "also log to output_dir/tensorboard when tensorboard is installed")

    def __post_init__(self):
        self.resume = resume_mode(self.resume)

    # ---------------------------------------------------------------- helpers
    @classmethod
    def load(cls, path: str | Path, base: "TrainConfig | None" = None) -> "TrainConfig":
        """Read a .toml, .json or .yaml/.yml file (unknown keys are an error); the fields the file does not
        set keep `base`'s values (default: TrainConfig's defaults; `distilx finetune` passes its own)."""
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
            _check_expanded_size(data, path)
        else:
            raise ValueError(f"config {path}: unknown extension {path.suffix!r}; use .toml, .json or .yaml")
        if "train" in data and isinstance(data["train"], dict):  # allow a [train] table
            data = data["train"]
        return (base or cls()).override(data)

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
        for f in dataclasses.fields(self):
            allowed = f.metadata["choices"]
            if allowed is not None and getattr(self, f.name) not in allowed:
                raise ValueError(f"{f.name}={getattr(self, f.name)!r}; choose one of {allowed}")
        if self.device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", str(self.device)):
            raise ValueError(f"device={self.device!r}; choose one of ('auto', 'cpu', 'cuda') or 'cuda:N'")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["valid"] is not None:
                test, words = f.metadata["valid"]
                if any(v is not None and not test(v) for v in (value if isinstance(value, list) else [value])):
                    raise ValueError(f"{f.name}={value} is out of range: valid is {words}")
        self.stream_options()  # the data fields, checked by the engine's own rules (rust/options.rs)
        if len(self.adam_betas) != 2:
            raise ValueError(f"adam_betas={self.adam_betas} must hold two numbers")
        self._check_task_fields()
        self._check_paths()
        if not any(getattr(self, name) > 0 for name in self._LOSS_WEIGHTS):  # else the first backward fails
            raise ValueError(f"every loss weight is 0 ({', '.join(self._LOSS_WEIGHTS)}): the student would learn "
                             "nothing; set at least one above 0 (e.g. --alpha-kl 5)")
        from .preemption import check_time_limit, signal_of

        for name in self.preempt_signals:
            signal_of(name)
        check_time_limit(self.time_limit, self.time_limit_margin)
        if self.resume != "never" and self.overwrite_output_dir:
            raise ValueError("resume and overwrite_output_dir exclude each other: --resume continues the run in "
                             "output_dir, --overwrite-output-dir replaces it")
        return self

    # Fields only one task reads (docs/tasks.md): set under the other task they are an error, not ignored
    _TASK_FIELDS = {"masked-lm": ("masking", "mlm_probability", "packing", "data", "kl_on", "fused_linear"),
                    "sequence-classification": ("text_fields", "label_field", "multi_label_threshold"),
                    "question-answering": ("doc_stride", "max_query_len", "max_answer_len", "n_best_size",
                                           "null_score_diff_threshold", "squad_v2"),
                    "token-classification": ("tokens_field", "tags_field", "label_all_subtokens", "tag_scheme",
                                             "strict_entities")}
    # The loss terms' weights (0 = off): at least one must be on
    _LOSS_WEIGHTS = ("alpha_kl", "alpha_mlm", "alpha_cos", "alpha_relation", "alpha_hidden")
    # What a pre-trained `student` folder replaces
    _STUDENT_INIT_FIELDS = ("student_layers", "student_layer_indices", "student_init", "student_hidden", "student_heads",
                            "student_intermediate", "student_config", "student_selection")
    # Fields that only mean something when another field is set: (field, the condition, the condition in words)
    _DEPENDENT_FIELDS = (
        ("student_selection", lambda c: c.student_init == "weight-selection", "--student-init weight-selection"),
        ("relation_heads", lambda c: c.alpha_relation > 0, "--alpha-relation > 0"),
        ("relation_teacher_layer", lambda c: c.alpha_relation > 0, "--alpha-relation > 0"),
        ("hidden_loss", lambda c: c.alpha_hidden > 0, "--alpha-hidden > 0"),
    )

    def _check_task_fields(self) -> None:
        defaults = TrainConfig()
        for task, names in self._TASK_FIELDS.items():
            stray = [n for n in names if task != self.task and getattr(self, n) != getattr(defaults, n)]
            if stray:
                raise ValueError(f"{', '.join(stray)} {'apply' if len(stray) > 1 else 'applies'} to task {task}, "
                                 f"not to task {self.task}: remove {'them' if len(stray) > 1 else 'it'}")
        stray = [n for n in self._STUDENT_INIT_FIELDS if getattr(self, n) != getattr(defaults, n)]
        if self.student and stray:
            raise ValueError(f"student={self.student!r} is a pre-trained student, which {', '.join(stray)} would "
                             "initialise from the teacher instead: pass one or the other")
        for name, applies, words in self._DEPENDENT_FIELDS:
            if getattr(self, name) != getattr(defaults, name) and not applies(self):
                raise ValueError(f"{name}={getattr(self, name)!r} applies only with {words}: remove it or set that")
        flags = [n for n in ("student_hidden", "student_heads", "student_intermediate") if getattr(self, n) is not None]
        if self.student_config and flags:
            raise ValueError(f"student_config={self.student_config!r} gives the whole shape, and {', '.join(flags)} "
                             "another: pass one or the other")

    def _check_paths(self) -> None:
        """train_files / eval_files hold paths: train_config.json records them and --resume digests them, so
        an object (a datasets.Dataset) is refused before the run creates anything."""
        for name in ("train_files", "eval_files"):
            for i, item in enumerate(getattr(self, name)):
                if not isinstance(item, (str, os.PathLike)):
                    raise ValueError(f"{name}[{i}] is a {type(item).__module__}.{type(item).__name__}, not a path: "
                                     "a run records its inputs by path (train_config.json, --resume); save a dataset "
                                     "with dataset.save_to_disk(folder) and pass the folder, or give it to "
                                     "MaskedLMStream")

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
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=os.fspath) + "\n", encoding="utf-8")


#: Values a config may hold once YAML aliases are expanded: a run's config is a few hundred; nested
#: aliases (`&a [x, x]`, `&b [*a, *a]`, ...) double it per level, and expanding them (a copy, a str())
#: took minutes and gigabytes before failing.
MAX_CONFIG_VALUES = 100_000


def _check_expanded_size(data, path) -> None:
    """Refuse a loaded YAML document whose values, aliases expanded, exceed MAX_CONFIG_VALUES (counted
    without expanding: each shared node's size is computed once), or that refers to itself."""
    sizes: dict[int, int] = {}

    def size(node) -> int:
        if not isinstance(node, (list, dict)):
            return 1
        key = id(node)
        if key in sizes:
            if sizes[key] < 0:
                raise ValueError(f"config {path}: refused: a YAML alias refers to a value that contains it "
                                 "(a cycle); write the values out")
            return sizes[key]
        sizes[key] = -1
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        total = 1 + sum(size(child) for child in children)
        sizes[key] = total
        if total > MAX_CONFIG_VALUES:
            raise ValueError(f"config {path}: refused: its YAML aliases expand to over {MAX_CONFIG_VALUES:,} values "
                             "(nested aliases multiply); write the values out")
        return total

    size(data)


def resume_mode(value):
    """`resume` as one of its modes: booleans (True, "true", "yes", "1", ...) read as 'always' / 'never'."""
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return "always"
    if text in ("0", "false", "no", "off"):
        return "never"
    return text if isinstance(value, str) else value


def _yaml_problem(exc) -> str:
    """One line out of PyYAML's multi-line error: what is wrong and where."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    if "python/" in problem:
        problem += "; YAML tags that build Python objects could run code, so they are refused"
    return problem + where


def default_text(f: dataclasses.Field, value: Any = dataclasses.MISSING) -> str:
    """A field's default (or `value`) as it is written on the command line (lists comma-separated)."""
    if value is dataclasses.MISSING:
        value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value)) or '""'
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or '""'
    return '""' if value == "" else str(value)


def config_table() -> str:
    """docs/config.md, generated from the fields (`python -m distilx.config > docs/config.md`)."""
    lines = ["# TrainConfig fields", "",
             "Generated from `python/distilx/config.py` by `python -m distilx.config > docs/config.md` "
             "(a test checks it is current). Every field is a key of a `.toml` / `.json` / `.yaml` run "
             "config and a `distilx train` flag (`student_layers` -> `--student-layers`; lists are "
             "comma-separated (space-separated works too); a boolean is `--flag`, `--flag true` or `--flag false`; "
             "`none` clears an optional field). `distilx finetune` takes the same flags except those about a "
             "teacher and its student, with its own defaults for a few (docs/tasks.md).", "",
             "| field | default | description |", "|---|---|---|"]
    for f in dataclasses.fields(TrainConfig):
        lines.append(f"| `{f.name}` | `{default_text(f)}` | {f.metadata['help']} |")
    return "\n".join(lines) + "\n"


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
    if origin is list and isinstance(value, (list, tuple)):
        nested = next((v for v in value if isinstance(v, (list, tuple, dict))), None)
        if nested is not None:  # str() of it would be a path no one meant (or, aliased, gigabytes)
            raise ValueError(f"config field {name}: an item is a {type(nested).__name__}, not a "
                             f"{typing.get_args(base)[0].__name__}")
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
        raise ValueError(f"config field {name}: cannot read {brief(value)} as {hint}") from exc


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


if __name__ == "__main__":
    print(config_table(), end="")
