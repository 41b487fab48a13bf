"""Runs under hostile input (issue 18 rows 5, 9-15, 20 and "also seen"): each reproduced on real files,
real tokenizers and tiny models, each either working or refused in one line before anything is created."""

import json
import os
import shutil
import sys

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from distilx import TrainConfig, train
from distilx.checkpoint import list_checkpoints, save_checkpoint
from distilx.cli import main
from distilx.losses import distillation_loss, fused_linear_distillation_loss
from distilx.run_dir import MARKER, OutputDirError
from pipeline_helpers import kernel_doc_slice, make_tiny_classifier, run_config

TINY = dict(max_steps=1, eval_files=[], eval_batches=0, save_every=1, student_layers=1)


def one_line_error(capsys, args) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_a_plot_not_drawn_is_not_recorded_and_a_user_file_there_is_kept(tiny_run_inputs, tmp_path, monkeypatch):
    """Row 5: without matplotlib the run recorded loss_curves.png without writing it, and a user's own
    loss_curves.png put there was deleted by --overwrite-output-dir."""
    teacher, train_file, heldout = tiny_run_inputs
    out = tmp_path / "run"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    train(run_config(teacher, train_file, heldout, out, **TINY))
    assert not (out / "loss_curves.png").exists()
    assert "loss_curves.png" not in json.loads((out / MARKER).read_text())["files"]
    (out / "loss_curves.png").write_bytes(b"the user's own plot")
    with pytest.raises(OutputDirError, match=r"holds files distilx did not write \(loss_curves.png\)"):
        train(run_config(teacher, train_file, heldout, out, overwrite_output_dir=True, **TINY))
    assert (out / "loss_curves.png").read_bytes() == b"the user's own plot"


def test_fused_linear_loss_of_no_row_is_zero_like_distillation_loss():
    """Row 9: 0 rows (a batch with no target under kl_on=targets) was 'cannot reshape tensor of 0 elements'."""
    torch.manual_seed(0)
    x, w = torch.randn(0, 8, requires_grad=True), torch.randn(50, 8, requires_grad=True)
    out = fused_linear_distillation_loss(x, w, torch.randn(0, 8), torch.randn(50, 8), torch.zeros(0, dtype=torch.long))
    ref = distillation_loss(torch.randn(0, 50), torch.randn(0, 50), torch.zeros(0, dtype=torch.long))
    assert out.loss.item() == ref.loss.item() == 0.0 and out.kl.item() == out.mlm.item() == 0.0
    out.loss.backward()
    assert w.grad is not None and not w.grad.any()


def test_a_training_batch_without_target_on_the_fused_linear_path(tiny_run_inputs):
    """Row 9 through the task: the masked-LM distiller's fused-linear forward on a batch with no target."""
    from distilx.models import load_teacher
    from distilx.tasks import task_for

    teacher_dir, _, _ = tiny_run_inputs
    task, config = task_for("masked-lm"), TrainConfig(kl_on="targets", fused_linear="on", alpha_cos=1.0)
    teacher = load_teacher(teacher_dir)
    student = task.init_student(teacher, TrainConfig(student_layers=1))
    forward = task.student_forward(student, dict(kl_on="targets", alpha_cos=1.0), config)
    batch = {"input_ids": torch.tensor([[101, 7592, 2088, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
             "labels": torch.full((1, 4), -100)}
    out = task.loss(teacher, forward, batch, torch.device("cpu"), config)
    assert out.kl.item() == out.mlm.item() == 0.0 and out.cos.item() > 0
    out.loss.backward()


def test_eval_checks_positions_in_one_line(tiny_run_inputs, capsys):
    """Row 10: `distilx eval --seq-len 1000` on a 128-position model was a 47-line traceback."""
    teacher, _, heldout = tiny_run_inputs
    err = one_line_error(capsys, ["eval", "--teacher", str(teacher), "--student", str(teacher), "--files",
                                  str(heldout), "--seq-len", "1000"])
    assert "seq_len=1000 is longer than the teacher can embed: 128 positions" in err and "--seq-len 128" in err


def test_a_dataset_in_train_files_is_refused_before_anything_is_created(tiny_run_inputs, tmp_path):
    """Row 11: a datasets.Dataset in TrainConfig.train_files failed in run_identity after the folder was made."""
    import datasets

    teacher, _, _ = tiny_run_inputs
    config = TrainConfig(teacher=str(teacher), train_files=[datasets.Dataset.from_dict({"text": ["a b c"] * 4})],
                         output_dir=str(tmp_path / "out"), device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"train_files\[0\] is a datasets.arrow_dataset.Dataset, not a path: .*"
                                         r"save_to_disk\(folder\) and pass the folder"):
        train(config)
    assert not (tmp_path / "out").exists()


def test_yaml_alias_fan_out_is_refused_in_one_line(tmp_path):
    """Row 12: nested aliases in train_files expanded to gigabytes (MemoryError after 26 s)."""
    pytest.importorskip("yaml")
    levels = ["  - &l0 [" + ", ".join(["x.txt"] * 10) + "]"]
    levels += [f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 7)]
    path = tmp_path / "bomb.yaml"
    path.write_text("train_files:\n" + "\n".join(levels) + "\n")
    with pytest.raises(ValueError, match=r"bomb.yaml: refused: its YAML aliases expand to over 100,000 values"):
        TrainConfig.load(path)
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text("train_files: &a [x.txt, *a]\n")
    with pytest.raises(ValueError, match=r"cycle.yaml: refused: a YAML alias refers to a value that contains it"):
        TrainConfig.load(cycle)
    nested = tmp_path / "nested.yaml"
    nested.write_text("train_files: [[a.txt, b.txt]]\n")
    with pytest.raises(ValueError, match="config field train_files: an item is a list, not a str"):
        TrainConfig.load(nested)


def test_id2label_with_a_gap_names_the_file(tmp_path, capsys):
    """Row 13: a teacher whose config.json id2label skips an id was a bare `KeyError: 3`."""
    labels, train_file, _ = kernel_doc_slice(tmp_path, every=400)
    teacher = make_tiny_classifier(tmp_path / "teacher", labels)
    config = json.loads((teacher / "config.json").read_text())
    config["id2label"] = {str(i if i < 3 else i + 1): name for i, name in enumerate(labels)}
    config["label2id"] = {name: int(i) for i, name in config["id2label"].items()}
    (teacher / "config.json").write_text(json.dumps(config))
    err = one_line_error(capsys, ["train", "--task", "sequence-classification", "--teacher", str(teacher),
                                  "--train-files", str(train_file), "--output-dir", str(tmp_path / "out"),
                                  "--max-steps", "1", "--progress", "false", "--device", "cpu"])
    assert f"the teacher's config.json ({teacher}): id2label numbers its 8 labels [0, 1, 2, 4," in err
    assert "without id 3: number them 0..7 without gaps" in err


def test_a_narrower_student_trains_with_alpha_cos_0(tiny_run_inputs, tmp_path, capsys):
    """Row 14: a --student of another width with --alpha-cos 0 was refused ("hidden sizes differ ...; set
    alpha_cos=0") though it was 0, against docs/tasks.md."""
    teacher, train_file, _ = tiny_run_inputs
    student = tmp_path / "narrow"
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=128)).save_pretrained(student)
    args = ["train", "--teacher", str(teacher), "--student", str(student), "--train-files", str(train_file),
            "--max-steps", "2", "--seq-len", "32", "--batch-size", "4", "--eval-batches", "0", "--progress", "false",
            "--tensorboard", "false", "--device", "cpu"]
    assert main(args + ["--output-dir", str(tmp_path / "a"), "--alpha-cos", "0"]) == 0
    capsys.readouterr()
    err = one_line_error(capsys, args + ["--output-dir", str(tmp_path / "b"), "--alpha-cos", "1"])
    assert "alpha_cos=1.0 compares hidden states, but the teacher's are 32 wide and the student's 16" in err


@pytest.mark.parametrize("inside", ["folder", "glob"])
def test_an_output_folder_inside_the_corpus_is_refused_at_start(tiny_run_inputs, tmp_path, capsys, inside):
    """Row 15: --output-dir CD/run with --train-files CD read the run's own files as corpus at --resume,
    which then always refused. Refused at start now, before anything is created."""
    _, train_file, _ = tiny_run_inputs
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copyfile(train_file, corpus / "train.txt")
    entry = str(corpus) if inside == "folder" else f"{corpus}/**/*.txt"
    teacher = tiny_run_inputs[0]
    err = one_line_error(capsys, ["train", "--teacher", str(teacher), "--train-files", entry, "--output-dir",
                                  str(corpus / "run"), "--max-steps", "1", "--device", "cpu"])
    assert f"output_dir {corpus / 'run'} is inside {entry} (train_files)" in err
    assert "put --output-dir outside it" in err
    assert not (corpus / "run").exists()


def test_output_folders_beside_a_flat_glob_are_allowed(tmp_path):
    from distilx.preflight import check_output_outside_inputs

    check_output_outside_inputs(TrainConfig(train_files=[f"{tmp_path}/*.txt"], output_dir=str(tmp_path / "run")))
    with pytest.raises(ValueError, match="is inside"):  # its vocab.txt would match *.txt
        check_output_outside_inputs(TrainConfig(train_files=[f"{tmp_path}/*.txt"], output_dir=str(tmp_path)))


def test_a_symlinked_oldest_checkpoint_is_pruned_without_debris(tmp_path):
    """Row 20: pruning a checkpoint that is a symlink left a `.removing-...` symlink behind. The link goes,
    its target stays."""
    root, elsewhere = tmp_path / "checkpoints", tmp_path / "elsewhere"
    state = {"w": torch.ones(2)}
    save_checkpoint(root, 1, state, {"step": 1}, keep_last=5, run_id="abc")
    save_checkpoint(root, 2, state, {"step": 2}, keep_last=5, run_id="abc")
    shutil.move(root / "step-00000001", elsewhere)
    os.symlink(elsewhere, root / "step-00000001")
    assert [p.name for p in list_checkpoints(root)] == ["step-00000001", "step-00000002"]
    save_checkpoint(root, 3, state, {"step": 3}, keep_last=2, run_id="abc")
    assert sorted(os.listdir(root)) == ["step-00000002", "step-00000003"]
    assert sorted(os.listdir(elsewhere)) == ["manifest.json", "model.safetensors", "owner.json", "trainer_state.pt"]


def test_an_untrained_classification_head_warns(tmp_path):
    """Also seen: a classifier saved straight from from_pretrained (a fresh head: output bias exactly 0, as
    transformers initialises it) was accepted as a teacher without a word."""
    from transformers import BertForSequenceClassification

    from distilx.models.classification import load_classifier

    trained = make_tiny_classifier(tmp_path / "trained", ("a", "b"))
    torch.manual_seed(0)
    fresh = tmp_path / "fresh"
    BertForSequenceClassification.from_pretrained(str(trained), num_labels=2).save_pretrained(fresh)
    model = BertForSequenceClassification.from_pretrained(str(fresh))
    torch.nn.init.zeros_(model.classifier.bias)
    model.save_pretrained(fresh)
    with pytest.warns(UserWarning, match=r"the teacher's classification head looks untrained: its output bias "
                                         r"\(classifier.bias\) is exactly 0"):
        load_classifier(fresh)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_classifier(trained)
