"""`distilx train` then `distilx eval`, end to end through the CLI, on every supported architecture
(tiny random teachers of tests/tiny_models.py with the bert-base-uncased tokenizer, real English text):
the loss goes down over 20 steps, and on held-out text the trained student's perplexity falls clearly below
its random teacher's (which the untrained student, a copy of teacher layers, shares: about the
vocabulary size)."""

import json
import statistics

import pytest
from transformers import AutoModelForMaskedLM

from distilx.cli import main
from distilx.models import load_teacher
from pipeline_helpers import corpus_slice
from tiny_models import AVAILABLE, save_teacher

CASES = [(name, "auto") for name in AVAILABLE] + [("bert", "same")]
STEPS = 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return corpus_slice(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("name, student_class", CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_train_and_eval_through_the_cli(name, student_class, corpus, tmp_path):
    train_file, heldout = corpus
    teacher = save_teacher(name, tmp_path / "teacher")
    out = tmp_path / "run"
    assert main(["train", "--teacher", str(teacher), "--train-files", str(train_file), "--output-dir", str(out),
                 "--student-class", student_class, "--seq-len", "32", "--batch-size", "4", "--max-steps", str(STEPS),
                 "--log-every", "1", "--lr", "5e-3", "--masking", "uniform", "--kl-on", "targets", "--seed", "3",
                 "--progress", "false", "--tensorboard", "false", "--eval-batches", "0", "--device", "cpu"]) == 0
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == STEPS
    assert statistics.mean(losses[-5:]) < statistics.mean(losses[:5]) - 0.5, losses

    teacher_model = load_teacher(teacher)
    student = AutoModelForMaskedLM.from_pretrained(out)
    distilbert = (name, student_class) == ("bert", "auto")
    expected_class = "DistilBertForMaskedLM" if distilbert else type(teacher_model).__name__
    assert type(student).__name__ == expected_class and student.config.distilx_teacher_layers == [0, 3]

    assert main(["eval", "--teacher", str(teacher), "--student", str(out), "--files", str(heldout), "--seq-len", "32",
                 "--batch-size", "4", "--max-batches", "4", "--json", str(tmp_path / "eval.json")]) == 0
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["targets"] > 0 and (metrics["teacher_layers"], metrics["student_layers"]) == (4, 2)
    assert metrics["teacher_perplexity"] > 0.5 * len(teacher_model.get_input_embeddings().weight)  # random
    assert metrics["student_perplexity"] < 0.8 * metrics["teacher_perplexity"], metrics
    assert metrics["student_params"] < metrics["teacher_params"]
