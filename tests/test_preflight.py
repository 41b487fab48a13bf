"""Everything a run needs is checked before its first step, and each refusal is one line naming the
input and the fix: eval files too small, seq_len beyond the models' positions (checked against the
real models' forward passes), out-of-range values, hostile pickles and YAML tags. The summary and
the plot survive a failing final evaluation."""

import os
import pickle
import re
import shutil

import pytest
import torch
from transformers import DistilBertConfig, DistilBertForMaskedLM, RobertaConfig, RobertaForMaskedLM

import distilx.evaluation
from distilx import TrainConfig, train
from distilx.cli import main
from distilx.preflight import check_positions, usable_positions
from distilx.models import load_teacher
from pipeline_helpers import run_config


def assert_nothing_trained(out):
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()


def test_eval_files_too_small_are_refused_before_training(tiny_run_inputs, tmp_path, capsys):
    """main: eval files too small to give a batch failed only after the whole training run, with a
    message about "the corpus" and "see stats()"."""
    small = tmp_path / "small.txt"
    small.write_text("A single held-out document is not a batch of eight.\n")
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"eval_files \[.*small.txt'\] give no full batch of batch_size=8 .*"
                                         "--batch-size.*--eval-batches 0"):
        train(run_config(*tiny_run_inputs, out, eval_files=[str(small)]))
    assert_nothing_trained(out)
    teacher, train_file, _ = tiny_run_inputs
    capsys.readouterr()
    assert main(["train", "--teacher", str(teacher), "--train-files", str(train_file), "--output-dir",
                 str(tmp_path / "cli"), "--eval-files", str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err
    assert "--eval-files: no such file or directory" in err and err.count("\n") == 1
    assert_nothing_trained(tmp_path / "cli")


def test_summary_and_plot_survive_a_failing_evaluation(tiny_run_inputs, tmp_path, monkeypatch):
    """main: metrics.json and the loss plot were written only after the final evaluation, so a failing
    evaluation lost them."""
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(distilx.evaluation, "evaluate", out_of_memory)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="out of memory"):
        train(run_config(*tiny_run_inputs, out, max_steps=2))
    summary = (out / "metrics.json").read_text()
    assert '"steps": 2' in summary and '"eval": null' in summary
    assert (out / "loss_curves.png").stat().st_size > 1000 and (out / "model.safetensors").is_file()


def test_positions_match_what_the_models_can_embed():
    """main had no position check. RoBERTa numbers positions from padding_idx + 1: 66 rows hold 64
    tokens. Checked against the models' own forward passes: the limit embeds, one more token fails."""
    torch.manual_seed(0)
    small = dict(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    roberta = RobertaForMaskedLM(RobertaConfig(**small, max_position_embeddings=66, pad_token_id=1)).eval()
    distil = DistilBertForMaskedLM(DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2, hidden_dim=32,
                                                    max_position_embeddings=40)).eval()
    for model, limit in ((roberta, 64), (distil, 40)):
        assert usable_positions(model) == limit
        with torch.no_grad():
            model(input_ids=torch.full((1, limit), 5))
            with pytest.raises((IndexError, RuntimeError)):
                model(input_ids=torch.full((1, limit + 1), 5))
    check_positions(64, teacher=roberta)
    with pytest.raises(ValueError, match=r"seq_len=65 is longer than the teacher can embed: 64 positions "
                                         r"\(max_position_embeddings=66 minus 2 reserved.*--seq-len 64 or less"):
        check_positions(65, teacher=roberta)
    with pytest.raises(ValueError, match="longer than the student can embed: 40 positions"):
        check_positions(41, teacher=roberta, student=distil)


def test_seq_len_beyond_the_positions_is_refused_before_the_first_step(tiny_run_inputs, tmp_path):
    """main: seq_len above the teacher's position limit trained 66 steps, then crashed with a raw
    tensor size error."""
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="seq_len=129 is longer than the teacher can embed: 128 positions"):
        train(run_config(*tiny_run_inputs, out, seq_len=129))
    assert_nothing_trained(out)


@pytest.mark.parametrize("field, value, valid", [
    ("warmup_ratio", "5", r"\[0, 1\]"), ("max_grad_norm", "-1", ">= 0"), ("epochs", "0", ">= 1"),
    ("lr", "0", "> 0"), ("adam_betas", "0.9,1.0", r"\[0, 1\)"), ("alpha_kl", "-1", ">= 0"),
    ("eval_batches", "-1", ">= 0"), ("lr", "nan", "> 0")])
def test_out_of_range_values_are_refused(field, value, valid, capsys):
    """main: warmup_ratio=5, max_grad_norm=-1 and epochs=0 (trained 1 step) were accepted silently."""
    assert main(["train", f"--{field.replace('_', '-')}", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"distilx train: error: {field}=") and err.count("\n") == 1
    assert re.search(valid, err)
    TrainConfig(warmup_ratio=0.0, max_grad_norm=0.0, epochs=1).validated()  # the bounds themselves are valid
    TrainConfig(warmup_ratio=1.0).validated()


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch may note the foreign pickle protocol
def test_hostile_files_are_refused_in_one_line(tiny_run_inputs, tmp_path, capsys):
    """main: a hostile pickle in a teacher folder and a `!!python` YAML tag were refused with raw
    tracebacks (torch's paragraph about PyTorch 2.6, PyYAML's ConstructorError)."""
    teacher, train_file, _ = tiny_run_inputs
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    hostile = tmp_path / "hostile-teacher"
    shutil.copytree(teacher, hostile)
    state = load_teacher(teacher).state_dict()
    (hostile / "model.safetensors").unlink()
    with open(hostile / "pytorch_model.bin", "wb") as f:
        pickle.dump({**state, "bert.pooler.dense.bias": Evil()}, f)
    capsys.readouterr()
    assert main(["train", "--teacher", str(hostile), "--train-files", str(train_file), "--output-dir",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{hostile / 'pytorch_model.bin'}: refused to load: it holds pickled objects" in err
    assert "could run code" in err and err.count("\n") == 1 and "Traceback" not in err

    config = tmp_path / "run.yaml"
    config.write_text(f"lr: !!python/object/apply:os.system ['touch {marker}']\n")
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"config {config}: refused: could not determine a constructor for the tag" in err
    assert "could run code" in err and "(line 1, column 5)" in err and err.count("\n") == 1
    assert not marker.exists()
