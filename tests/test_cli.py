"""The `distilx` command: train from a TOML file with flag overrides, eval, plot, clear errors."""

import json
import subprocess
import sys

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
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((root / "eval.json").read_text())
    for key in ("teacher_accuracy", "student_accuracy", "teacher_perplexity", "student_perplexity",
                "top1_agreement", "teacher_params", "student_params", "speed_ratio"):
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
