"""The demo's task stage: a classifier fine-tuned by distilx itself, distilled into 3 layers.

1. Task: `assets.kernel_doc_classification()` — paragraphs of the Linux kernel documentation labelled
   by their top-level folder (subsystem), the 8 largest, split by file (docs/evidence.md).
2. Teacher: all-MiniLM-L6-v2 with a fresh classification head, fine-tuned on the train split by
   `distilx finetune` (finetune.py: the encoder's weights, a fresh head, the gold-label loss, the
   distillation loop), embeddings frozen; cached under `assets.cache_dir()` like the masked-LM teacher.
3. Student: 3 of its 6 layers ([0, 3, 5]) with the teacher's head, distilled with the default loss
   (T = 2, 5·KL + 2·CE + 1·cos), embeddings frozen (half a CPU step's cost; docs/tasks.md).
4. Both evaluated on a fixed sample of the test split (files never trained on): accuracy, macro-F1,
   the student's retention of the teacher's accuracy; sizes; the speed-up on one batch, alternated.

The settings are bench/task_evidence.py's (docs/evidence.md's measured run) with one seed.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

from . import assets
from .report import plural

__all__ = ["TASK_STAGE", "task_teacher", "eval_sample", "run_task_stage"]

TASK_STAGE = dict(teacher_steps=300, teacher_lr=3e-4, steps=150, lr=5e-4, seq_len=32, batch_size=16,
                  student_layers=3, eval_examples=2000, speed_batch=32, speed_repeats=20, seed=0)


def _teacher_config(spec: dict, splits: dict, output_dir: Path):
    from .finetune import finetune_config

    return finetune_config({"train_files": [str(splits["train"])], "output_dir": str(output_dir),
                            "seq_len": spec["seq_len"], "batch_size": spec["batch_size"],
                            "max_steps": spec["teacher_steps"], "lr": spec["teacher_lr"], "warmup_ratio": 0.1,
                            "freeze_embeddings": True, "log_every": 25, "save_every": spec["teacher_steps"],
                            "keep_last": 1, "eval_batches": 0, "tensorboard": False, "seed": spec["seed"],
                            "device": "cpu"})


def task_teacher(spec: dict, splits: dict, *, refit: bool = False, log=print) -> Path:
    """The cached fine-tuned MiniLM classifier folder (fine-tuned now by `distilx finetune` if missing)."""
    from .finetune import finetune

    key = json.dumps([_teacher_config(spec, splits, Path("-")).to_dict(), splits["train"].parent.name, "v1"])
    folder = assets.cache_dir() / f"teacher-minilm-kernel-docs-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if not refit and (folder / "model.safetensors").is_file():
        log(f"using the cached fine-tuned classifier teacher {folder}")
        return folder
    log(f"fine-tuning all-MiniLM-L6-v2 + a fresh classification head for {plural(spec['teacher_steps'], 'step')} "
        f"(distilx finetune; cached in {folder})")
    scratch = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    finetune(assets.minilm_dir(), _teacher_config(spec, splits, scratch))
    shutil.rmtree(scratch / "checkpoints")  # a finished fit: its resume state is only disk space here
    shutil.rmtree(folder, ignore_errors=True)
    scratch.rename(folder)  # the cache entry appears complete or not at all
    return folder


def eval_sample(splits: dict, n: int) -> Path:
    """A fixed random sample of `n` test paragraphs (all of them if there are fewer), written once."""
    lines = splits["test"].read_text(encoding="utf-8").splitlines()
    chosen = sorted(random.Random(1234).sample(range(len(lines)), min(n, len(lines))))
    path = splits["test"].with_name(f"test-sample-{len(chosen)}.jsonl")
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(lines[i] + "\n" for i in chosen), encoding="utf-8")
        tmp.rename(path)
    return path


def run_task_stage(output_dir: Path, *, steps: int | None = None, refit_teacher: bool = False,
                   spec: dict | None = None, splits: dict | None = None, log=print) -> dict:
    """Fine-tune (or reuse) the classifier teacher, distil it into 3 layers, evaluate both on held-out
    paragraphs; returns the stage's record for the demo. splits: {"train", "test"} labelled files instead
    of the kernel-docs task's (tests)."""
    from .config import TrainConfig
    from .demo_report import interleaved_speed, model_size
    from .models.classification import load_classifier
    from .report import classification_table
    from .tasks.labelled_data import LabelledExamples, LabelSet
    from .training import train

    spec = dict(spec or TASK_STAGE)
    if steps is not None:
        spec["steps"] = steps
    log("building the kernel-docs subsystems task (paragraph -> folder, split by file; cached after the first run)")
    splits = splits or assets.kernel_doc_classification()
    sample = eval_sample(splits, spec["eval_examples"])
    teacher_dir = task_teacher(spec, splits, refit=refit_teacher, log=log)
    log(f"distilling the classifier 6 -> {spec['student_layers']} layers for {plural(spec['steps'], 'step')} "
        f"({spec['batch_size']} paragraphs x {spec['seq_len']} tokens) into {output_dir}; then evaluating both on "
        f"{sample.name}")
    config = TrainConfig(task="sequence-classification", teacher=str(teacher_dir), train_files=[str(splits["train"])],
                         eval_files=[str(sample)], output_dir=str(output_dir), student_layers=spec["student_layers"],
                         seq_len=spec["seq_len"], batch_size=spec["batch_size"], max_steps=spec["steps"], lr=spec["lr"],
                         warmup_ratio=0.1, freeze_embeddings=True, log_every=10, save_every=max(spec["steps"], 1),
                         keep_last=1, eval_batches=-(-spec["eval_examples"] // spec["batch_size"]), seed=spec["seed"],
                         device="cpu", overwrite_output_dir=True)
    result = train(config)
    log("timing teacher and student forwards on the same batch, alternated")
    teacher = load_classifier(teacher_dir)
    examples = LabelledExamples([sample], teacher_dir, text_fields=["text"], label_field="label",
                                labels=LabelSet.of(teacher.config), seq_len=spec["seq_len"])
    speed = interleaved_speed(teacher, result.student, next(examples.in_order(spec["speed_batch"])),
                              repeats=spec["speed_repeats"])
    labels = LabelSet.of(teacher.config).names
    return {"setup": {**spec, "classes": len(labels), "labels": list(labels), "eval_file": str(sample),
                      "teacher": str(teacher_dir)},
            "metrics": result.eval_metrics, "history": result.history, "speed": speed,
            "size": model_size(teacher, result.student, teacher_dir, output_dir),
            "table": classification_table(result.eval_metrics), "output_dir": str(output_dir)}
