"""`distilx finetune`: a fresh task head on a pre-trained encoder, trained on labelled examples — the way
to a fine-tuned teacher for task-stage distillation (docs/tasks.md).

    distilx finetune --task sequence-classification --model ENCODER_OR_MLM_FOLDER \
        --train-files train.jsonl --eval-files dev.jsonl --output-dir teacher/

The task builds the model (`Task.finetune_model`: the folder's encoder weights, a freshly initialised
head, the labels of config.labels or of the train files), and the model is trained by the distillation
loop itself (`training.train`: checkpoints, exact resume, DDP, the run folder's guarantees, metrics.jsonl,
the loss plot) with the gold-label loss alone: `FIXED` switches the KL and cosine terms off, so the
loop's teacher side — the untouched fresh model, needed only for its labels, vocabulary and shape — is
never run. The output folder is a fine-tuned classifier that `distilx train --task ... --teacher` takes.

Defaults are TrainConfig's except `FINETUNE_DEFAULTS` (fine-tuning's usual learning rate and warmup);
the fields in `NOT_FINETUNE` describe a teacher or its student and are refused.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

from .config import TrainConfig

__all__ = ["finetune", "finetune_config", "model_of_run", "FinetuneResult", "FINETUNE_DEFAULTS", "FIXED", "NOT_FINETUNE"]

# the loss: the cross-entropy on the gold labels alone (no teacher to distil from)
FIXED = {"alpha_kl": 0.0, "alpha_cos": 0.0, "alpha_mlm": 1.0}
# TrainConfig fields about a teacher or a student made from one: no flags of `distilx finetune`
NOT_FINETUNE = ("teacher", "student", "student_layers", "student_layer_indices", "student_class", "student_init",
                "temperature", "alpha_kl", "alpha_mlm", "alpha_cos", "kl_on")
# where fine-tuning's defaults differ from distillation's: BERT's fine-tuning learning rate (2e-5 .. 5e-5)
# and 10% warmup; the task that has a head to fit; an output folder name of its own
FINETUNE_DEFAULTS = {"task": "sequence-classification", "lr": 5e-5, "warmup_ratio": 0.1,
                     "output_dir": "distilx-finetuned"}


class FinetuneResult:
    """What `finetune` returns: the training loop's result and the held-out metrics (None without
    eval_files), whose `teacher_*` entries are the fine-tuned model's (report.one_model prints them)."""

    def __init__(self, train_result, eval_metrics: dict | None):
        self.train_result, self.eval_metrics = train_result, eval_metrics
        self.output_dir, self.steps, self.student = train_result.output_dir, train_result.steps, train_result.student


def finetune_config(values: dict | None = None, config_file: str | Path | None = None) -> TrainConfig:
    """The run config of a fine-tuning: FINETUNE_DEFAULTS, then `config_file`, then `values`; without a
    config file, a resume (`values` resume != never) of a folder with a train_config.json reads that file
    instead of the defaults, as `distilx train --resume` does. A field of NOT_FINETUNE set is an error."""
    from .config import resume_mode
    from .resume import CONFIG_FILE, folder_config

    values = dict(values or {})
    base = TrainConfig().override(FINETUNE_DEFAULTS)
    if config_file:
        return _refuse_distillation_fields(TrainConfig.load(config_file, base=base).override(values))
    output_dir = Path(values.get("output_dir", base.output_dir))
    if resume_mode(values.get("resume", "never")) != "never" and (output_dir / CONFIG_FILE).is_file():
        # the run's own train_config.json (as `distilx train --resume` reads it); the fields finetune
        # sets itself (FIXED, the teacher) go back to their defaults, finetune() sets them again
        saved = folder_config(output_dir, values)
        defaults = TrainConfig()
        return _refuse_distillation_fields(dataclasses.replace(saved, **{n: getattr(defaults, n) for n in NOT_FINETUNE}))
    return _refuse_distillation_fields(base.override(values))


def model_of_run(config: TrainConfig) -> str:
    """The encoder folder a resumed fine-tuning started from (its train_config.json's `teacher`): what
    `distilx finetune --output-dir RUN --resume` uses without --model."""
    from .resume import CONFIG_FILE

    path = Path(config.output_dir) / CONFIG_FILE
    if config.resume == "never" or not path.is_file():
        raise ValueError("--model ENCODER_FOLDER is required: only a --resume of the fine-tuning in --output-dir "
                         f"reads it from its {CONFIG_FILE} (there is none in {config.output_dir})"
                         if config.resume != "never" else "--model ENCODER_FOLDER is required")
    return TrainConfig.load(path).teacher


def _refuse_distillation_fields(config: TrainConfig) -> TrainConfig:
    defaults = TrainConfig()
    stray = [name for name in NOT_FINETUNE if getattr(config, name) != getattr(defaults, name)]
    if stray:
        raise ValueError(f"{', '.join(stray)} {'describe' if len(stray) > 1 else 'describes'} a teacher or a "
                         "distilled student; distilx finetune trains one model on the gold labels: remove "
                         f"{'them' if len(stray) > 1 else 'it'} (distilx train distils)")
    return config


def finetune(model: str | os.PathLike, config: TrainConfig, *, log=print) -> FinetuneResult:
    """Fine-tune a fresh `config.task` head on the encoder folder `model` as `config` says (make it with
    `finetune_config`); the output folder holds the fine-tuned model (and tokenizer files), loadable
    as a teacher of `config.task`. Evaluates it on config.eval_files (eval_batches x batch_size examples)."""
    from .data import Tokenizer
    from .run_dir import RunFolder
    from .tasks import task_for
    from .training import train

    model = os.fspath(model)
    config = _refuse_distillation_fields(config.validated())
    if not Path(model).is_dir():
        raise FileNotFoundError(f"--model {model}: no such folder (a pre-trained encoder or masked-LM folder)")
    task = task_for(config.task)
    config = config.override({**FIXED, "teacher": model})
    fresh = task.finetune_model(model, config)
    tokenizer = Tokenizer(str(config.tokenizer or model))
    evaluating = bool(config.eval_files) and config.eval_batches > 0
    if evaluating:
        task.check_eval_input(config, tokenizer, fresh)  # before the first step, not after the run
    # The loop's end-of-run evaluation compares a teacher with its student; here the "teacher" is the
    # fresh model, so the loop skips it and the fine-tuned model is evaluated alone below.
    result = train(config.override({"eval_batches": 0}), teacher=fresh, student=copy.deepcopy(fresh))
    metrics = None
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 evaluates and writes
        if evaluating:
            device = next(result.student.parameters()).device
            metrics = task.evaluate_one(result.student.eval(), config, tokenizer, device)
        _record(result.output_dir, config, metrics, RunFolder)
    return FinetuneResult(result, metrics)


def _record(output_dir: Path, config: TrainConfig, metrics: dict | None, run_folder) -> None:
    """The run's config as asked (the loop saw eval_batches=0) and the evaluation in metrics.json."""
    import json

    with run_folder.claim(output_dir, resume=True) as run, run.writing("train_config.json", "metrics.json"):
        config.save(output_dir / "train_config.json")
        summary = json.loads((output_dir / "metrics.json").read_text())
        summary["eval"] = metrics
        (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
