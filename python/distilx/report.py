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
           "metrics_table", "classification_table", "question_answering_table",
           "token_classification_table", "MASKED_LM_MEASURES", "CLASSIFICATION_MEASURES", "plural"]


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


def retention(student: float | None, teacher: float | None) -> float | None:
    """student / teacher; None when the teacher is at 0 or either side has no value (no ratio to give)."""
    return student / teacher if student is not None and teacher else None


def model_facts(*, teacher_params: int, student_params: int, teacher_layers: int, student_layers: int,
                teacher_forward_s: float, student_forward_s: float, shape: dict | None = None) -> dict:
    """The fields every comparison ends with: sizes, the shape entries (`*_hidden`, `*_heads`,
    `*_intermediate`: evaluation.shape_entries) and the forward times measured in the same run."""
    return {"teacher_params": teacher_params, "student_params": student_params,
            "teacher_layers": teacher_layers, "student_layers": student_layers, **(shape or {}),
            "teacher_forward_s": teacher_forward_s, "student_forward_s": student_forward_s,
            "speed_ratio": student_forward_s / teacher_forward_s, "speedup": teacher_forward_s / student_forward_s}


_NAME, _COLUMN = 36, 20


def _share(value: float | None) -> str:
    return "n/a (teacher at 0)" if value is None else f"{value:.1%}"


def _shape(m: dict, role: str) -> str:
    """'384 / 12 / 1536' (hidden / heads / intermediate), '?' for a size the width table does not know."""
    return " / ".join("?" if m.get(f"{role}_{k}") is None else str(m[f"{role}_{k}"])
                      for k in ("hidden", "heads", "intermediate"))


def _side_by_side(m: dict, what: str, rows: list[tuple[str, str, str]], ratios: list[tuple[str, str]]) -> str:
    """A header naming `what` was evaluated, teacher and student columns (rows of (label, teacher, student)
    text), the parameters and forward times, then one-value lines (`ratios`) and the measured speed-up."""
    rows = rows + [("shape (hidden / heads / FFN)", _shape(m, "teacher"), _shape(m, "student")),
                   ("parameters", f"{m['teacher_params'] / 1e6:.1f} M", f"{m['student_params'] / 1e6:.1f} M"),
                   ("forward time (batch)", f"{m['teacher_forward_s'] * 1e3:.0f} ms",
                    f"{m['student_forward_s'] * 1e3:.0f} ms")]
    teacher = f"teacher ({plural(m['teacher_layers'], 'layer')})"
    student = f"student ({plural(m['student_layers'], 'layer')})"
    lines = [f"{'held-out (' + what + ')':<{_NAME}}{teacher:>{_COLUMN}}{student:>{_COLUMN}}"]
    lines += [f"{name:<{_NAME}}{t:>{_COLUMN}}{s:>{_COLUMN}}" for name, t, s in rows]
    lines += [f"{name:<{_NAME}}{value:>{2 * _COLUMN}}" for name, value in ratios]
    lines.append(f"{'student speed-up (same run)':<{_NAME}}{m['speedup']:>{2 * _COLUMN - 1}.2f}x")
    return "\n".join(lines)


def comparison_table(metrics: dict, measures: list[Measure], *, what: str,
                     extra_rows: list[tuple[str, str]] = ()) -> str:
    """A header naming `what` was evaluated, one row per Measure (teacher and student columns), the
    retentions of the measures that have one, `extra_rows` ((label, text) pairs), and the speed-up."""
    m = metrics
    rows = [(x.label, format(m[f"teacher_{x.key}"], x.fmt), format(m[f"student_{x.key}"], x.fmt)) for x in measures]
    ones = [(f"student/teacher {x.label} retention", _share(m[f"{x.key}_retention"])) for x in measures if x.retention]
    return _side_by_side(m, what, rows, ones + list(extra_rows))


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


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def classification_table(metrics: dict) -> str:
    """evaluate_classification()'s result as the side-by-side table (by the teacher's problem type)."""
    m = metrics
    problem = m.get("problem_type", "single_label_classification")
    if problem == "regression":
        rows = [(name, _number(m[f"teacher_{key}"]), _number(m[f"student_{key}"]))
                for name, key in (("Pearson", "pearson"), ("Spearman", "spearman"), ("MSE", "mse"))]
        ratios = [("student/teacher Pearson retention", _share(m["pearson_retention"])),
                  ("student/teacher Spearman retention", _share(m["spearman_retention"])),
                  ("student-teacher Pearson", _number(m["agreement"]))]
    elif problem == "multi_label_classification":
        rows = [(f"micro-F1 (threshold {m['threshold']})", f"{m['teacher_micro_f1']:.3f}", f"{m['student_micro_f1']:.3f}"),
                ("macro-F1", f"{m['teacher_macro_f1']:.3f}", f"{m['student_macro_f1']:.3f}"),
                ("exact label set", f"{m['teacher_subset_accuracy']:.1%}", f"{m['student_subset_accuracy']:.1%}")]
        ratios = [("student/teacher micro-F1 retention", _share(m["micro_f1_retention"])),
                  ("student/teacher macro-F1 retention", _share(m["macro_f1_retention"])),
                  ("student/teacher same label set", f"{m['agreement']:.1%}")]
    else:
        return comparison_table(m, CLASSIFICATION_MEASURES, what=plural(m["examples"], "example"),
                                extra_rows=[("student/teacher agreement", f"{m['agreement']:.1%}")])
    return _side_by_side(m, plural(m["examples"], "example"), rows, ratios)


def question_answering_table(metrics: dict) -> str:
    """evaluate_question_answering()'s result as the side-by-side table."""
    m = metrics
    rows = [("exact match", f"{m['teacher_exact_match']:.1f}", f"{m['student_exact_match']:.1f}"),
            ("F1", f"{m['teacher_f1']:.1f}", f"{m['student_f1']:.1f}")]
    ratios = [("student/teacher exact-match retention", _share(m["exact_match_retention"])),
              ("student/teacher F1 retention", _share(m["f1_retention"])),
              ("student/teacher same answer", f"{m['agreement']:.1%}")]
    what = f"SQuAD v{m['squad_version']}, {plural(m['questions'], 'question')}"
    return _side_by_side(m, what, rows, ratios)


def token_classification_table(metrics: dict) -> str:
    """evaluate_token_classification()'s result as the side-by-side table."""
    m = metrics
    rows, ratios = [], []
    if m["teacher_entity_f1"] is not None:
        rows += [(f"entity {key} ({m['tag_scheme']}, {m['entity_rules']})" if key == "F1" else f"entity {key}",
                  f"{m['teacher_entity_' + key.lower()]:.3f}", f"{m['student_entity_' + key.lower()]:.3f}")
                 for key in ("precision", "recall", "F1")]
        ratios.append(("student/teacher entity-F1 retention", _share(m["entity_f1_retention"])))
    rows.append(("token accuracy", f"{m['teacher_token_accuracy']:.1%}", f"{m['student_token_accuracy']:.1%}"))
    ratios += [("student/teacher token-accuracy retention", _share(m["token_accuracy_retention"])),
               ("student/teacher tag agreement", f"{m['agreement']:.1%}")]
    return _side_by_side(m, f"{plural(m['sentences'], 'sentence')}, {plural(m['words'], 'word')}", rows, ratios)
