"""Text for people: the teacher-vs-student tables (`distilx train`, `distilx eval`, `distilx demo`) and
counted nouns."""

from __future__ import annotations

__all__ = ["metrics_table", "classification_table", "plural"]


def plural(count: int, noun: str) -> str:
    """'1 step', '3 steps'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _shape(m: dict, role: str) -> str:
    """'384 / 12 / 1536' (hidden / heads / intermediate), '?' for a size the width table does not know."""
    return " / ".join("?" if m.get(f"{role}_{k}") is None else str(m[f"{role}_{k}"])
                      for k in ("hidden", "heads", "intermediate"))


def _side_by_side(m: dict, what: str, rows: list[tuple[str, str, str]], ratios: list[tuple[str, str]]) -> str:
    """A header naming `what` was evaluated, teacher and student columns, then one-value ratio lines."""
    rows = rows + [("shape (hidden / heads / FFN)", _shape(m, "teacher"), _shape(m, "student")),
                   ("parameters", f"{m['teacher_params'] / 1e6:.1f} M", f"{m['student_params'] / 1e6:.1f} M"),
                   ("forward time (batch)", f"{m['teacher_forward_s'] * 1e3:.0f} ms",
                    f"{m['student_forward_s'] * 1e3:.0f} ms")]
    teacher = f"teacher ({plural(m['teacher_layers'], 'layer')})"
    student = f"student ({plural(m['student_layers'], 'layer')})"
    lines = [f"{'held-out (' + what + ')':<34}{teacher:>20}{student:>20}"]
    lines += [f"{name:<34}{t:>20}{s:>20}" for name, t, s in rows]
    lines += [f"{name:<34}{value:>40}" for name, value in ratios]
    lines.append(f"{'student speed-up (same run)':<34}{m['speedup']:>39.2f}x")
    return "\n".join(lines)


def metrics_table(metrics: dict) -> str:
    """evaluate()'s result (masked-LM) as the side-by-side table the demo prints."""
    m = metrics
    rows = [("masked-token accuracy", f"{m['teacher_accuracy']:.1%}", f"{m['student_accuracy']:.1%}"),
            ("perplexity (masked tokens)", f"{m['teacher_perplexity']:.1f}", f"{m['student_perplexity']:.1f}")]
    return _side_by_side(m, plural(m["targets"], "masked token"), rows,
                         [("student/teacher top-1 agreement", f"{m['top1_agreement']:.1%}")])


def _share(value: float | None) -> str:
    return "n/a (teacher at 0)" if value is None else f"{value:.1%}"


def classification_table(metrics: dict) -> str:
    """evaluate_classification()'s result as the side-by-side table."""
    m = metrics
    rows = [("accuracy", f"{m['teacher_accuracy']:.1%}", f"{m['student_accuracy']:.1%}"),
            ("macro-F1", f"{m['teacher_macro_f1']:.3f}", f"{m['student_macro_f1']:.3f}")]
    ratios = [("student/teacher accuracy retention", _share(m["accuracy_retention"])),
              ("student/teacher macro-F1 retention", _share(m["macro_f1_retention"])),
              ("student/teacher agreement", f"{m['agreement']:.1%}")]
    return _side_by_side(m, plural(m["examples"], "example"), rows, ratios)
