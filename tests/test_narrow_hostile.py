"""Hostile input to narrower students through `distilx train` (issue 18's probe of issue 20's surfaces; the
shape and student-config checks themselves: tests/test_student_shapes.py, the width terms':
tests/test_width_terms.py): each is one line before the first step; a setting wrong in itself (every loss
weight 0) is refused before the output folder is created."""

import pytest

from distilx import TrainConfig
from distilx.cli import main
from pipeline_helpers import corpus_slice, make_tiny_teacher

WEIGHT_SELECTION = ["--student-hidden", "16", "--student-init", "weight-selection", "--alpha-cos", "0"]


@pytest.fixture(scope="module")
def flags(tmp_path_factory):
    root = tmp_path_factory.mktemp("narrow-hostile")
    teacher = make_tiny_teacher(root / "teacher")  # BERT: 32 wide, 2 heads of 16, 4 layers
    train_file, _ = corpus_slice(root, every=200)
    return ["train", "--teacher", str(teacher), "--train-files", str(train_file), "--student-layers", "2",
            "--seq-len", "48", "--batch-size", "8", "--log-every", "1", "--eval-batches", "0", "--device", "cpu",
            "--progress", "false", "--tensorboard", "false", "--kl-on", "targets"]


def refused(capsys, args, out) -> str:
    capsys.readouterr()
    assert main(args + ["--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distilx train: error: ") and "\n" not in err and "Traceback" not in err, err
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()  # no step was run
    return err


@pytest.mark.parametrize("extra, message", [
    # every term off: the first backward used to fail with torch's "does not require grad"
    (["--alpha-kl", "0", "--alpha-mlm", "0"], "every loss weight is 0 (alpha_kl, alpha_mlm, alpha_cos, alpha_relation, "
                                              "alpha_hidden)"),
    (["--student-heads", "32"], "choose a hidden size of e.g. 32, or 16 heads"),
    (["--alpha-relation", "1", "--relation-teacher-layer", "4"], "layer 4 is outside BertForMaskedLM's 4 layers"),
    (["--alpha-relation", "1", "--relation-heads", "3"], "relation_heads=3 must divide both models' attention widths"),
])
def test_bad_narrow_runs_are_one_line_before_a_step(flags, tmp_path, capsys, extra, message):
    assert message in refused(capsys, flags + WEIGHT_SELECTION + extra, tmp_path / "run")


def test_every_weight_zero_is_refused_by_the_configuration_itself(tmp_path):
    zero = dict(alpha_kl=0.0, alpha_mlm=0.0, alpha_cos=0.0)
    for task in ("masked-lm", "sequence-classification", "token-classification", "question-answering"):
        with pytest.raises(ValueError, match=r"every loss weight is 0 \(alpha_kl, alpha_mlm"):
            TrainConfig(task=task, **zero).validated()
        for on in ("alpha_relation", "alpha_hidden"):  # a width term alone is a run
            assert getattr(TrainConfig(task=task, **zero, **{on: 1.0}).validated(), on) == 1.0


def test_a_resume_that_changes_the_shape_names_the_change(flags, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(flags + WEIGHT_SELECTION + ["--max-steps", "2", "--save-every", "1", "--output-dir", str(run)]) == 0
    capsys.readouterr()
    for extra, field in ((["--student-hidden", "24", "--student-heads", "3"], "student_hidden: 16 in"),
                         (["--student-intermediate", "16"], "student_intermediate: None in"),
                         (["--student-selection", "importance"], "student_selection: 'uniform' in")):
        assert main(["train", "--output-dir", str(run), "--resume", "--max-steps", "4", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("distilx train: error: --resume continues the run") and field in err, err
