"""`distilx demo` at toy size: both stages on the real MiniLM teacher and real text (a slice of it), the
closing table's fields, the cached teachers reused, the same numbers from the same command, `--stage`."""

import json
import re

import pytest

from distilx import demo
from distilx.cli import main
from distilx.demo_pretrain import PRETRAIN
from distilx.demo_task import TASK_STAGE
from pipeline_helpers import corpus_slice, kernel_doc_slice

# a few seconds per stage instead of minutes; everything else as the demo runs it
TINY_PRETRAIN = {**PRETRAIN, "head_steps": 2, "steps": 2, "seq_len": 32, "batch_size": 8, "eval_batches": 1,
                 "speed_repeats": 2}
TINY_TASK = {**TASK_STAGE, "teacher_steps": 3, "steps": 2, "seq_len": 16, "batch_size": 8, "eval_examples": 24,
             "speed_batch": 4, "speed_repeats": 2}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Data slices and an empty distilx cache (the fitted teachers go there), shared by this module."""
    root = tmp_path_factory.mktemp("demo")
    corpus = corpus_slice(root, every=200)
    _, train, test = kernel_doc_slice(root, every=200)
    return root, {"corpus": corpus, "splits": {"train": train, "test": test}}


def run(toy, monkeypatch, out, stage, lines):
    root, data = toy
    monkeypatch.setenv("DISTILX_CACHE", str(root / "cache"))
    return demo.run_demo(out, stage=stage, pretrain_spec=TINY_PRETRAIN, task_spec=TINY_TASK, log=lines.append, **data)


@pytest.mark.slow
def test_both_stages_the_closing_table_and_the_cached_teachers(toy, monkeypatch):
    root, _ = toy
    lines = []
    record = run(toy, monkeypatch, root / "both", "both", lines)
    text = "\n".join(lines)
    # both teachers were fitted on this first run: the MLM head, and the classifier by distilx finetune
    assert "fitting the MLM head" in text and "fine-tuning all-MiniLM-L6-v2 + a fresh classification head" in text

    # the pre-training stage: both maskings, agreement and KL, the loss curves
    pre = record["pretrain"]
    assert set(pre["metrics"]) == {"frequency", "uniform"}
    for masking, m in pre["metrics"].items():
        assert m["masking"] == masking and m["kl_to_teacher"] > 0 and 0 <= m["top1_agreement"] <= 1
        assert f"{m['student_perplexity']:.1f}" in pre["table"]
    assert (root / "both" / "pretrain" / "loss_curves.png").is_file() and pre["history"][-1]["step"] == 2
    # the task stage: the student distilled from the fine-tuned teacher, evaluated on the held-out sample
    task = record["task"]
    m = task["metrics"]
    assert m["examples"] == 24 and m["student_layers"] == 3 and m["teacher_layers"] == 6
    assert m["accuracy_retention"] == pytest.approx(m["student_accuracy"] / m["teacher_accuracy"])

    # the closing table: DistilBERT's three claims, each number of this run followed by what it is measured on
    claims = record["claims"]
    for claim in ("97%", "40% smaller", "60% faster"):
        assert claim in claims
    assert f"{m['accuracy_retention']:.1%} of the teacher's accuracy" in claims
    size = task["size"]
    assert f"{size['teacher_params'] / 1e6:.1f} M -> {size['student_params'] / 1e6:.1f} M parameters" in claims
    assert size["student_mb"] < size["teacher_mb"] and size["student_params"] < size["teacher_params"]
    assert f"{task['speed']['speedup']:.2f}x" in claims and f"{pre['speed']['speedup']:.2f}x" in claims
    rows = claims.splitlines()[1:]
    assert len(rows) == 2 * 5  # retention, size (two stages), speed-up (two stages): each with its line
    assert all(line.strip().startswith("measured on:") for line in rows[1::2])
    saved = json.loads((root / "both" / "demo_metrics.json").read_text())
    assert saved["claims"] == claims and saved["task"]["metrics"] == m
    assert "Total" in lines[-3] and all(name in text for name in ("model.safetensors", "metrics.jsonl"))

    # a second run reuses both cached teachers and prints the same numbers (seeded; timings aside)
    again = []
    second = run(toy, monkeypatch, root / "again", "both", again)
    text = "\n".join(again)
    assert "using the cached fitted masked-LM teacher" in text and "using the cached fine-tuned classifier" in text
    assert "fitting" not in text and "fine-tuning" not in text
    untimed = [k for k in m if not k.endswith(("forward_s", "speed_ratio", "speedup"))]
    assert {k: second["task"]["metrics"][k] for k in untimed} == {k: m[k] for k in untimed}
    for masking in ("frequency", "uniform"):
        assert second["pretrain"]["metrics"][masking]["kl_to_teacher"] == pre["metrics"][masking]["kl_to_teacher"]


def test_one_stage_runs_alone(toy, monkeypatch):
    root, _ = toy
    lines = []
    record = run(toy, monkeypatch, root / "task-only", "task", lines)
    assert "pretrain" not in record and not (root / "task-only" / "pretrain").exists()
    assert "[stage 1/1] task-stage distillation" in lines[0]
    assert re.search(r"retention +97% of BERT's performance \(GLUE\) +\d+\.\d%", record["claims"])
    lines = []
    record = run(toy, monkeypatch, root / "pretrain-only", "pretrain", lines)
    assert "task" not in record
    assert re.search(r"retention .* not measured", record["claims"])


def test_stage_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--stage", "everything"])
    assert stop.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="stage='everything'"):
        demo.run_demo(stage="everything")
