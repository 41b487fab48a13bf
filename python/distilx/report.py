"""Text for people: the teacher-vs-student tables (`distilx train`, `distilx eval`, `distilx demo`) and
counted nouns."""

from __future__ import annotations

__all__ = ["metrics_table", "classification_table", "question_answering_table", "token_classification_table", "plural"]


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
        rows = [("accuracy", f"{m['teacher_accuracy']:.1%}", f"{m['student_accuracy']:.1%}"),
                ("macro-F1", f"{m['teacher_macro_f1']:.3f}", f"{m['student_macro_f1']:.3f}")]
        ratios = [("student/teacher accuracy retention", _share(m["accuracy_retention"])),
                  ("student/teacher macro-F1 retention", _share(m["macro_f1_retention"])),
                  ("student/teacher agreement", f"{m['agreement']:.1%}")]
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
