"""The `distilx` command: train from a TOML file with flag overrides, eval, plot, clear errors."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from distilx.cli import main
from distilx.config import TrainConfig
from pipeline_helpers import corpus_slice, make_tiny_teacher


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    teacher = make_tiny_teacher(root / "teacher")
    train_file, heldout_file = corpus_slice(root)
    out = root / "run"
    (root / "run.toml").write_text(
        "[train]\n"
        f'teacher = "{teacher}"\n'
        f'train_files = ["{train_file}"]\n'
        f'output_dir = "{out}"\n'
        "student_layers = 2\nseq_len = 48\nbatch_size = 8\nmax_steps = 50\nkl_on = \"targets\"\n"
        "progress = false\ntensorboard = false\neval_batches = 0\n")
    code = main(["train", "--config", str(root / "run.toml"), "--max-steps", "3", "--lr", "1e-4",
                 "--save-every", "2", "--log-every", "1"])
    assert code == 0
    return root, teacher, heldout_file, out


def test_train_flags_override_the_file(trained):
    root, _, _, out = trained
    config = TrainConfig.load(out / "train_config.json")
    assert config.max_steps == 3 and config.lr == 1e-4 and config.seq_len == 48  # flags win, file fills the rest
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3


def test_eval_and_plot(trained, capsys):
    root, teacher, heldout_file, out = trained
    capsys.readouterr()
    assert main(["eval", "--teacher", str(teacher), "--student", str(out), "--files", str(heldout_file),
                 "--seq-len", "48", "--batch-size", "8", "--max-batches", "2", "--json", str(root / "eval.json")]) == 0
    shown = capsys.readouterr().out
    printed = json.loads(shown[shown.index("\n{") + 1:])  # the table, then the JSON
    assert printed == json.loads((root / "eval.json").read_text())
    assert shown.startswith("held-out (") and f"{printed['student_perplexity']:.1f}" in shown
    for key in ("teacher_accuracy", "student_accuracy", "teacher_perplexity", "student_perplexity",
                "top1_agreement", "kl_to_teacher", "teacher_params", "student_params", "speed_ratio"):
        assert key in printed
    assert printed["student_params"] < printed["teacher_params"] and printed["targets"] > 0
    (out / "loss_curves.png").unlink()
    assert main(["plot", str(out)]) == 0
    assert (out / "loss_curves.png").stat().st_size > 1000


def test_user_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["train", "--teacher", str(tmp_path / "missing"), "--train-files", str(tmp_path / "x.txt"),
                 "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "Traceback" not in err
    assert main(["train", "--kl-on", "everything"]) == 2
    assert "kl_on" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "distilx.cli", "train", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "--student-layers" in proc.stdout and "--resume" in proc.stdout


def _flat(text: str) -> str:
    return "".join(text.split())  # argparse wraps help text at spaces and hyphens


def test_train_help_shows_each_fields_description_and_default():
    from distilx.config import default_text

    proc = subprocess.run([sys.executable, "-m", "distilx.cli", "train", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    shown = _flat(proc.stdout)
    assert "TrainConfig." not in shown
    for f in dataclasses.fields(TrainConfig):
        assert _flat(f.metadata["help"]) in shown, f.name
        assert _flat(f"{f.metadata['help']} (default: {default_text(f)})") in shown, f.name  # no switch lacks one
    assert _flat("peak learning rate (default: 0.0005)") in shown


def test_config_docs_are_generated_from_the_fields():
    from distilx.config import config_table

    docs = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert docs.read_text(encoding="utf-8") == config_table(), \
        "docs/config.md is stale: regenerate it with `python -m distilx.config > docs/config.md`"


def test_train_prints_the_table_plurals_and_the_resume_point(tmp_path, capsys):
    teacher = make_tiny_teacher(tmp_path / "teacher")
    train_file, heldout_file = corpus_slice(tmp_path)
    out = tmp_path / "run"
    args = ["train", "--teacher", str(teacher), "--train-files", str(train_file), "--eval-files", str(heldout_file),
            "--output-dir", str(out), "--student-layers", "2", "--seq-len", "48", "--batch-size", "8",
            "--kl-on", "targets", "--progress", "false", "--tensorboard", "false", "--eval-batches", "1",
            "--save-every", "1"]
    assert main(args + ["--max-steps", "1"]) == 0
    printed = capsys.readouterr().out
    assert "after 1 step (0 skipped)" in printed
    table = printed[:printed.index("{")]
    assert "teacher (4 layers)" in table and "student (2 layers)" in table
    for row in ("masked-token accuracy", "perplexity (masked tokens)", "parameters", "top-1 agreement", "speed-up"):
        assert row in table, row
    metrics = json.loads(printed[printed.index("{"):printed.rindex("}") + 1])
    assert f"{metrics['student_accuracy']:.1%}" in table and metrics["student_layers"] == 2

    assert main(args + ["--max-steps", "2", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"resuming from step 1 ({out / 'checkpoints' / 'step-00000001'})" in printed
    assert "after 2 steps (0 skipped)" in printed


def test_os_errors_are_one_line_messages(tmp_path, capsys):
    teacher = make_tiny_teacher(tmp_path / "teacher")
    train_file, _ = corpus_slice(tmp_path)
    base = ["train", "--teacher", str(teacher), "--student-layers", "2", "--seq-len", "48", "--batch-size", "8",
            "--max-steps", "1", "--progress", "false", "--tensorboard", "false", "--eval-batches", "0"]
    capsys.readouterr()  # transformers' own progress bars while the teacher was saved
    # an output folder below a regular file: NotADirectoryError from the loop's set-up
    assert main(base + ["--train-files", str(train_file), "--output-dir", str(train_file / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distilx train: error:") and "Not a directory" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    # a file that opens but cannot be read (EIO): OSError from the Rust data engine
    assert main(base + ["--train-files", "/proc/self/mem", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distilx train: error:") and "/proc/self/mem" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_teacher_of_an_unsupported_kind_is_a_one_line_error(tmp_path, capsys):
    from transformers import AlbertConfig, AlbertForMaskedLM, BertConfig, BertForSequenceClassification

    teacher = make_tiny_teacher(tmp_path / "teacher")
    small = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48)
    # ALBERT shares one layer across depth (no layer stack to keep); a classifier has no MLM head
    AlbertForMaskedLM(AlbertConfig(embedding_size=16, **small)).save_pretrained(tmp_path / "albert")
    BertForSequenceClassification(BertConfig(**small)).save_pretrained(tmp_path / "classifier")
    train_file, _ = corpus_slice(tmp_path)
    capsys.readouterr()  # transformers' own progress bars while saving
    for folder, what, needed in (
            ("albert", "unsupported model AlbertForMaskedLM (model_type 'albert')", "model types ['bert', "),
            ("classifier", "holds a BertForSequenceClassification, whose head is not a masked-LM head",
             "a folder saved from a …ForMaskedLM")):
        assert main(["train", "--teacher", str(tmp_path / folder), "--tokenizer", str(teacher),
                     "--train-files", str(train_file), "--output-dir", str(tmp_path / f"run-{folder}"),
                     "--max-steps", "1"]) == 2
        err = capsys.readouterr().err
        assert what in err and needed in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
