"""Text for people: the teacher-vs-student tables of every task, their JSON shape, and counted nouns.

One shape for every task's evaluation (`distilx eval`, the end of `distilx train`, the demo), so a new
task's evaluation only says which measures it has:

- the metrics are a flat dict: `task`, the count of what was evaluated (`examples`, or `targets` for
  masked-LM), one `teacher_<key>` / `student_<key>` pair per measure, `<key>_retention` (student /
  teacher, None when the teacher is at 0) for the measures where "keeps N% of the teacher" means
  something, task-specific extras (e.g. `agreement`), and the model facts `model_facts` adds:
  `*_params`, `*_layers`, `*_forward_s`, `speed_ratio`, `speedup`;
- `comparison_table(metrics, measures, what=..., extra_rows=...)` prints it: a header naming what was
  evaluated, one row per `Measure` with the teacher and student columns, the retention lines, the
  extras, the parameters, the forward time and the measured speed-up;
- `emit(metrics, table, json_path)` is what the commands print: the table, then the JSON (and the
  JSON into `--json FILE` when asked).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measure", "comparison_table", "model_facts", "retention", "emit", "one_model",
           "metrics_table", "classification_table", "MASKED_LM_MEASURES", "CLASSIFICATION_MEASURES", "plural"]


def plural(count: int, noun: str) -> str:
    """'1 step', '3 steps'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class Measure:
    """One row of a comparison: `teacher_<key>` and `student_<key>` printed with `fmt` (a format spec);
    with `retention`, also the line "student/teacher <label> retention" from `<key>_retention`."""

    label: str
    key: str
    fmt: str = ".1%"
    retention: bool = False


def retention(student: float, teacher: float) -> float | None:
    """student / teacher; None when the teacher is at 0 (no ratio to give)."""
    return student / teacher if teacher else None


def model_facts(*, teacher_params: int, student_params: int, teacher_layers: int, student_layers: int,
                teacher_forward_s: float, student_forward_s: float) -> dict:
    """The fields every comparison ends with: sizes and the forward times measured in the same run."""
    return {"teacher_params": teacher_params, "student_params": student_params,
            "teacher_layers": teacher_layers, "student_layers": student_layers,
            "teacher_forward_s": teacher_forward_s, "student_forward_s": student_forward_s,
            "speed_ratio": student_forward_s / teacher_forward_s, "speedup": teacher_forward_s / student_forward_s}


_NAME, _COLUMN = 36, 20


def _share(value: float | None) -> str:
    return "n/a (teacher at 0)" if value is None else f"{value:.1%}"


def comparison_table(metrics: dict, measures: list[Measure], *, what: str,
                     extra_rows: list[tuple[str, str]] = ()) -> str:
    """A header naming `what` was evaluated, teacher and student columns, then one-value lines: the
    retentions, `extra_rows` ((label, text) pairs), and the measured speed-up."""
    m = metrics
    rows = [(x.label, format(m[f"teacher_{x.key}"], x.fmt), format(m[f"student_{x.key}"], x.fmt)) for x in measures]
    rows += [("parameters", f"{m['teacher_params'] / 1e6:.1f} M", f"{m['student_params'] / 1e6:.1f} M"),
             ("forward time (batch)", f"{m['teacher_forward_s'] * 1e3:.0f} ms", f"{m['student_forward_s'] * 1e3:.0f} ms")]
    teacher = f"teacher ({plural(m['teacher_layers'], 'layer')})"
    student = f"student ({plural(m['student_layers'], 'layer')})"
    lines = [f"{'held-out (' + what + ')':<{_NAME}}{teacher:>{_COLUMN}}{student:>{_COLUMN}}"]
    lines += [f"{name:<{_NAME}}{t:>{_COLUMN}}{s:>{_COLUMN}}" for name, t, s in rows]
    ones = [(f"student/teacher {x.label} retention", _share(m[f"{x.key}_retention"])) for x in measures if x.retention]
    ones += list(extra_rows)
    lines += [f"{name:<{_NAME}}{value:>{2 * _COLUMN}}" for name, value in ones]
    lines.append(f"{'student speed-up (same run)':<{_NAME}}{m['speedup']:>{2 * _COLUMN - 1}.2f}x")
    return "\n".join(lines)


def one_model(metrics: dict, measures: list[Measure], *, what: str, name: str = "model") -> str:
    """The table of a single model (`distilx finetune`'s evaluation): its `teacher_<key>` side only."""
    m = metrics
    lines = [f"{'held-out (' + what + ')':<{_NAME}}{name:>{_COLUMN}}"]
    lines += [f"{x.label:<{_NAME}}{format(m[f'teacher_{x.key}'], x.fmt):>{_COLUMN}}" for x in measures]
    lines.append(f"{'parameters':<{_NAME}}{m['teacher_params'] / 1e6:>{_COLUMN - 2}.1f} M")
    return "\n".join(lines)


def emit(metrics: dict, table: str, json_path: str | Path | None = None, out=print) -> None:
    """What `distilx eval` / `train` / `finetune` print: the table, then the metrics as JSON; `json_path`
    also gets the JSON."""
    text = json.dumps(metrics, indent=2)
    out(table)
    out(text)
    if json_path:
        Path(json_path).write_text(text + "\n", encoding="utf-8")


# --- the two tasks of this package (other tasks declare their own measures the same way) ---------
MASKED_LM_MEASURES = [Measure("masked-token accuracy", "accuracy"),
                      Measure("perplexity (masked tokens)", "perplexity", ".1f")]
CLASSIFICATION_MEASURES = [Measure("accuracy", "accuracy", retention=True),
                           Measure("macro-F1", "macro_f1", ".3f", retention=True)]


def metrics_table(metrics: dict) -> str:
    """evaluate()'s result (masked-LM) as the side-by-side table."""
    m = metrics
    extra = [("student/teacher top-1 agreement", f"{m['top1_agreement']:.1%}")]
    if m.get("kl_to_teacher") is not None:
        extra.append(("KL(teacher || student) per target", f"{m['kl_to_teacher']:.3f}"))
    what = plural(m["targets"], "masked token") + (f", {m['masking']} masking" if m.get("masking") else "")
    return comparison_table(m, MASKED_LM_MEASURES, what=what, extra_rows=extra)


def classification_table(metrics: dict) -> str:
    """evaluate_classification()'s result as the side-by-side table."""
    return comparison_table(metrics, CLASSIFICATION_MEASURES, what=plural(metrics["examples"], "example"),
                            extra_rows=[("student/teacher agreement", f"{metrics['agreement']:.1%}")])
