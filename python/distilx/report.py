"""Text for people: the teacher-vs-student table (`distilx train`, `distilx demo`) and counted nouns."""

from __future__ import annotations

__all__ = ["metrics_table", "plural"]


def plural(count: int, noun: str) -> str:
    """'1 step', '3 steps'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def metrics_table(metrics: dict) -> str:
    """evaluate()'s result as the side-by-side table the demo prints."""
    m = metrics
    rows = [("masked-token accuracy", f"{m['teacher_accuracy']:.1%}", f"{m['student_accuracy']:.1%}"),
            ("perplexity (masked tokens)", f"{m['teacher_perplexity']:.1f}", f"{m['student_perplexity']:.1f}"),
            ("parameters", f"{m['teacher_params'] / 1e6:.1f} M", f"{m['student_params'] / 1e6:.1f} M"),
            ("forward time (batch)", f"{m['teacher_forward_s'] * 1e3:.0f} ms", f"{m['student_forward_s'] * 1e3:.0f} ms")]
    teacher = f"teacher ({plural(m['teacher_layers'], 'layer')})"
    student = f"student ({plural(m['student_layers'], 'layer')})"
    lines = [f"{'held-out (' + plural(m['targets'], 'masked token') + ')':<34}{teacher:>20}{student:>20}"]
    lines += [f"{name:<34}{t:>20}{s:>20}" for name, t, s in rows]
    lines.append(f"{'student/teacher top-1 agreement':<34}{m['top1_agreement']:>40.1%}")
    lines.append(f"{'student speed-up (same run)':<34}{m['speedup']:>39.2f}x")
    return "\n".join(lines)
