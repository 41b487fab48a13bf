"""The embedded default (`distilx demo`): both distillation stages on a real teacher and real text.

- `--stage pretrain` (demo_pretrain.py): all-MiniLM-L6-v2 with a fitted MLM head distilled into 3 layers
  on English text (DistilBERT's pre-training distillation), reported with what minutes of CPU training
  can show: agreement with the teacher, KL to it, perplexities on the training masking and uniform.
- `--stage task` (demo_task.py): the same encoder fine-tuned by `distilx finetune` on the kernel-docs
  subsystems task, distilled into 3 layers (task-stage distillation): held-out retention of the
  teacher's accuracy.
- `--stage both` (the default): both, then the table of demo_report.py beside DistilBERT's claims
  (97% of the performance, 40% smaller, 60% faster), one line per number saying what it is measured on.

Both teachers are fitted on first run and cached (`assets.cache_dir()`); later runs reuse them. Every
phase prints a progress line at least every few seconds. The students go to `output_dir/pretrain` and
`output_dir/task`, the whole record to `output_dir/demo_metrics.json`.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from pathlib import Path

from . import assets

__all__ = ["run_demo", "STAGES", "written_outputs"]

STAGES = ("pretrain", "task", "both")


def __getattr__(name):
    """The names of the one-stage demo (DEMO_DEFAULTS, demo_teacher, fit_teacher_head), for scripts
    written against it: they live in demo_pretrain.py now."""
    if name not in ("DEMO_DEFAULTS", "fit_teacher_head", "demo_teacher"):
        raise AttributeError(f"module 'distilx.demo' has no attribute {name!r}")
    from . import demo_pretrain

    if name == "DEMO_DEFAULTS":
        return demo_pretrain.PRETRAIN
    if name == "fit_teacher_head":
        return demo_pretrain.fit_teacher_head

    def demo_teacher(*, head_steps, seq_len, batch_size, lr, seed, encoder_layers=None, encoder_lr=None,
                     refit=False, log=print):
        spec = dict(demo_pretrain.PRETRAIN, head_steps=head_steps, seq_len=seq_len, batch_size=batch_size,
                    head_lr=lr, seed=seed)
        spec.update({k: v for k, v in (("head_encoder_layers", encoder_layers), ("head_encoder_lr", encoder_lr))
                     if v is not None})
        return demo_pretrain.pretrain_teacher(spec, refit=refit, log=log)
    return demo_teacher


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _claim_demo_folder(output_dir: Path | None) -> Path:
    """The demo's folder: one run folder per stage inside; the default lives in the cache."""
    from .run_dir import MARKER

    if output_dir is None:
        output_dir = assets.cache_dir() / "demo-run"
        old = assets.cache_dir() / "demo-student"  # where a distilx before the two-stage demo kept its student
        if old.is_dir() and (old / MARKER).is_file():
            shutil.rmtree(old)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


def run_demo(output_dir: str | Path | None = None, *, stage: str = "both", pretrain_steps: int | None = None,
             task_steps: int | None = None, refit_teachers: bool = False, log=print,
             pretrain_spec: dict | None = None, task_spec: dict | None = None, corpus: tuple | None = None,
             splits: dict | None = None) -> dict:
    """Run the demo's stages (`stage`: "pretrain", "task" or "both"); returns the record written to
    demo_metrics.json. pretrain_spec / task_spec replace the stages' settings, corpus / splits their data
    (tests run them tiny)."""
    from .demo_pretrain import run_pretrain_stage
    from .demo_report import claims_table
    from .demo_task import run_task_stage

    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}; choose one of {STAGES}")
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    output_dir = _claim_demo_folder(output_dir)
    runs = [name for name in ("pretrain", "task") if stage in (name, "both")]
    record: dict = {"stage": stage, "date": time.strftime("%Y-%m-%d"), "timing": {}}
    for i, name in enumerate(runs, 1):
        log(f"[stage {i}/{len(runs)}] {'pre-training distillation' if name == 'pretrain' else 'task-stage distillation'}")
        phase, phase_cpu = time.perf_counter(), _cpu_seconds()
        if name == "pretrain":
            record[name] = run_pretrain_stage(output_dir / "pretrain", steps=pretrain_steps, refit_teacher=refit_teachers,
                                              spec=pretrain_spec, corpus=corpus, log=log)
        else:
            record[name] = run_task_stage(output_dir / "task", steps=task_steps, refit_teacher=refit_teachers,
                                          spec=task_spec, splits=splits, log=log)
        record["timing"][name] = {"wall_s": round(time.perf_counter() - phase, 1),
                                  "cpu_s": round(_cpu_seconds() - phase_cpu, 1)}
        log("")
        log(record[name]["table"])
        log("")
    record["claims"] = claims_table(record)
    record["timing"]["total"] = {"wall_s": round(time.perf_counter() - start, 1),
                                 "cpu_s": round(_cpu_seconds() - cpu_start, 1),
                                 "load_average": [round(x, 2) for x in os.getloadavg()]}
    (output_dir / "demo_metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    log(record["claims"])
    log("")
    total = record["timing"]["total"]
    log(f"Total {total['wall_s']:.0f} s wall, {total['cpu_s']:.0f} s CPU (load average "
        f"{total['load_average'][0]:.1f}). Everything above: {output_dir / 'demo_metrics.json'}")
    for name in runs:
        log(f"{name} student: {record[name]['output_dir']} — {written_outputs(Path(record[name]['output_dir']))}")
    return record


# what train() leaves next to the student, in the order the closing message names them
_OUTPUTS = {"model.safetensors": "the student (from_pretrained loads the folder)", "metrics.json": "run summary",
            "metrics.jsonl": "losses per logged step", "loss_curves.png": "loss plot",
            "tensorboard": "TensorBoard logs", "train_config.json": "resolved config"}


def written_outputs(output_dir: Path) -> str:
    """The model, metrics and plot files present in output_dir, each with what it holds."""
    found = [f"{name}{'/' if (output_dir / name).is_dir() else ''} ({what})"
             for name, what in _OUTPUTS.items() if (output_dir / name).exists()]
    if not (output_dir / "loss_curves.png").exists():
        found.append("no loss plot: matplotlib is not installed (pip install 'distilx[plots]')")
    return "; ".join(found) + "."
