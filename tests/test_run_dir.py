"""A run owns its output folder: the teacher's folder, another run's folder and folders with foreign
files are refused and left byte-identical; --overwrite-output-dir deletes only what the earlier run
wrote; a second process is refused while the first holds the lock, which SIGKILL releases; --resume
names every difference between the checkpoint's configuration and this one."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from distilx import train
from distilx.checkpoint import checkpoint_owner, list_checkpoints
from distilx.cli import main
from distilx.run_dir import LOCK, MARKER, OutputDirError, RunFolder
from fault_helpers import snapshot
from pipeline_helpers import make_tiny_teacher, run_config


def config_for(tiny_run_inputs, out, **kw):
    return run_config(*tiny_run_inputs, out, **{"eval_batches": 0, **kw})


def unlocked_snapshot(folder):
    """The folder's files except the lock file, whose content names the last process that locked it."""
    files = snapshot(folder)
    files.pop(LOCK, None)
    return files


def test_the_teacher_and_tokenizer_folders_are_refused(tiny_run_inputs, tmp_path, monkeypatch, capsys):
    """main: --output-dir equal to the teacher's folder overwrote the teacher's model.safetensors and
    config.json with the student, then crashed with shutil.SameFileError on vocab.txt."""
    teacher, train_file, _ = tiny_run_inputs
    before = snapshot(teacher)
    link = tmp_path / "link-to-teacher"
    link.symlink_to(teacher)
    monkeypatch.chdir(teacher)
    for out in (teacher, link, Path("."), Path("..") / teacher.name):  # as given, a symlink, relative paths
        for extra in ({}, {"overwrite_output_dir": True}, {"resume": True}):
            with pytest.raises(OutputDirError, match="is the teacher's folder"):
                train(config_for(tiny_run_inputs, out, **extra))
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer_dir.mkdir()
    shutil.copyfile(teacher / "tokenizer.json", tokenizer_dir / "tokenizer.json")
    with pytest.raises(OutputDirError, match="is the tokenizer's folder"):
        train(config_for(tiny_run_inputs, tokenizer_dir, tokenizer=str(tokenizer_dir / "tokenizer.json")))
    assert main(["train", "--teacher", str(teacher), "--train-files", str(train_file), "--output-dir", str(link),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "is the teacher's folder" in err and "Traceback" not in err and err.count("\n") == 1
    assert snapshot(teacher) == before  # byte-identical, and nothing added (no lock, no marker)
    assert sorted(p.name for p in tokenizer_dir.iterdir()) == ["tokenizer.json"]


def test_a_fresh_run_never_mixes_with_an_earlier_run(tiny_run_inputs, tmp_path):
    """main: a fresh run into a folder holding an earlier run's checkpoints overwrote its model and
    metrics, kept the old checkpoints and pruned its own; a later --resume loaded the other run's last
    checkpoint, trained 0 steps, printed "after 8 steps" with rc 0 and returned the other run's weights."""
    out = tmp_path / "run"
    train(config_for(tiny_run_inputs, out, max_steps=8, save_every=4, seed=1))
    before = unlocked_snapshot(out)
    with pytest.raises(OutputDirError, match="holds another distilx run .*newest checkpoint step-00000008.*--resume"):
        train(config_for(tiny_run_inputs, out, max_steps=3, save_every=1, seed=2))
    assert unlocked_snapshot(out) == before

    second = train(config_for(tiny_run_inputs, out, max_steps=3, save_every=1, seed=2, overwrite_output_dir=True))
    run_id = json.loads((out / MARKER).read_text())["run_id"]
    ckpts = list_checkpoints(out / "checkpoints")
    assert [p.name for p in ckpts] == ["step-00000002", "step-00000003"]  # the earlier run's 4 and 8 are gone
    assert {checkpoint_owner(p)["run_id"] for p in ckpts} == {run_id}
    assert sorted(os.listdir(out / "checkpoints")) == ["step-00000002", "step-00000003"]
    # --resume continues this run: nothing left to train, the weights are this run's
    resumed = train(config_for(tiny_run_inputs, out, max_steps=3, save_every=1, seed=2, resume=True))
    assert resumed.steps == 3
    for a, b in zip(second.student.state_dict().values(), resumed.student.state_dict().values()):
        assert torch.equal(a, b)


def test_a_run_that_wrote_nothing_does_not_block_a_corrected_retry(tiny_run_inputs, tmp_path):
    """A run that failed before writing anything (here: a teacher path with a typo) left only its marker;
    before, the corrected retry into the same folder was refused as "another distilx run" and needed
    --overwrite-output-dir or --resume. Foreign files still refuse the folder."""
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError):
        train(config_for(tiny_run_inputs, out, teacher=str(tmp_path / "no-such-teacher")))
    assert json.loads((out / MARKER).read_text())["files"] == []
    result = train(config_for(tiny_run_inputs, out, max_steps=2))
    assert result.steps == 2
    with pytest.raises(FileNotFoundError):
        train(config_for(tiny_run_inputs, tmp_path / "other", teacher=str(tmp_path / "no-such-teacher")))
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="files distilx did not write"):
        train(config_for(tiny_run_inputs, tmp_path / "other", max_steps=2))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_foreign_files_are_refused_and_never_deleted(tiny_run_inputs, tmp_path):
    """main: an unrelated folder as output_dir: distilx deleted user files in checkpoints/step-00000001/
    and a step-99999999.tmp-1/ folder, overwrote config.json and model.safetensors, and pruned all of
    the new run's checkpoints."""
    out = tmp_path / "mine"
    (out / "checkpoints" / "step-00000001").mkdir(parents=True)
    (out / "checkpoints" / "step-00000001" / "notes.txt").write_text("my notes")
    (out / "checkpoints" / "step-99999999.tmp-1").mkdir()
    (out / "checkpoints" / "step-99999999.tmp-1" / "data.bin").write_bytes(b"\0" * 64)
    (out / "config.json").write_text('{"mine": true}')
    (out / "model.safetensors").write_bytes(b"not a model")
    before = snapshot(out)
    for extra in ({}, {"overwrite_output_dir": True}, {"resume": True}):
        with pytest.raises(OutputDirError, match="holds files distilx did not write .*checkpoints, config.json"):
            train(config_for(tiny_run_inputs, out, **extra))
        assert snapshot(out) == before  # not even a lock file was added

    # a run of ours with files dropped in later: an overwrite is refused before deleting anything ...
    run = tmp_path / "run"
    train(config_for(tiny_run_inputs, run, max_steps=2, save_every=1))
    (run / "README.md").write_text("my model card")
    (run / "checkpoints" / "step-00000001" / "my-notes.txt").write_text("keep me")
    before = unlocked_snapshot(run)
    with pytest.raises(OutputDirError, match=r"README\.md, checkpoints/step-00000001/my-notes\.txt"):
        train(config_for(tiny_run_inputs, run, max_steps=2, save_every=1, overwrite_output_dir=True))
    assert unlocked_snapshot(run) == before
    # ... and a resume that prunes that checkpoint removes only the files a save created
    train(config_for(tiny_run_inputs, run, max_steps=4, save_every=1, resume=True))
    assert sorted(os.listdir(run / "checkpoints" / "step-00000001")) == ["my-notes.txt"]
    assert (run / "README.md").read_text() == "my model card"
    assert [p.name for p in list_checkpoints(run / "checkpoints")][-2:] == ["step-00000003", "step-00000004"]


def test_a_second_process_on_a_locked_folder_is_refused(tiny_run_inputs, tmp_path):
    """main: two `distilx train` processes on one output folder: the second deleted the first's
    in-progress .tmp checkpoint (the first died) and metrics.jsonl interleaved both runs."""
    teacher, train_file, _ = tiny_run_inputs
    out = tmp_path / "run"
    command = [sys.executable, "-m", "distilx.cli", "train", "--teacher", str(teacher), "--train-files",
               str(train_file), "--output-dir", str(out), "--student-layers", "2", "--seq-len", "48",
               "--batch-size", "8", "--max-steps", "100000", "--save-every", "3", "--log-every", "1",
               "--kl-on", "targets", "--progress", "false", "--tensorboard", "false", "--eval-batches", "0",
               "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (out / "metrics.jsonl").is_file() or not list_checkpoints(out / "checkpoints"):
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first run did not start training"
            time.sleep(0.2)
        run_id = json.loads((out / MARKER).read_text())["run_id"]
        for extra in ([], ["--resume"]):
            second = subprocess.run(command + extra, env=env, capture_output=True, text=True, timeout=180)
            assert second.returncode == 2, second.stderr
            assert f"is in use by another distilx process (pid {first.pid} on " in second.stderr
            assert "Traceback" not in second.stderr
        assert first.poll() is None, "the first run must still be training"
        assert json.loads((out / MARKER).read_text())["run_id"] == run_id
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    # the kernel dropped the SIGKILLed holder's lock: the run can be continued
    with RunFolder.claim(out, resume=True) as run:
        assert run.run_id == run_id
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))  # one run's records, in order


def test_resume_names_every_difference_from_the_checkpoint(tiny_run_inputs, tmp_path):
    """main: --resume loaded the newest checkpoint in the folder whatever configuration wrote it."""
    teacher, train_file, _ = tiny_run_inputs
    corpus = tmp_path / "corpus.txt"
    shutil.copyfile(train_file, corpus)
    out = tmp_path / "run"
    train(config_for(tiny_run_inputs, out, train_files=[str(corpus)], max_steps=4, save_every=2), stop_after=2)
    other_teacher = make_tiny_teacher(tmp_path / "other-teacher", seed=1)
    with pytest.raises(ValueError, match="cannot resume from .*step-00000002: it was written by another") as refused:
        train(config_for(tiny_run_inputs, out, train_files=[str(corpus)], max_steps=4, save_every=2, resume=True,
                         seq_len=32, lr=1e-4, student_layers=3, teacher=str(other_teacher)))
    message = str(refused.value)
    for difference in ("seq_len: 48 in the checkpoint, 32 now", "lr: 0.0005 in the checkpoint, 0.0001 now",
                       "student_layers: 2 in the checkpoint, 3 now", "teacher: its weights or config.json differ",
                       "student shape: "):
        assert difference in message
    with corpus.open("a") as f:  # the same corpus file, edited in place
        f.write("A document added after the checkpoint was written.\n")
    with pytest.raises(ValueError, match="corpus content changed since the checkpoint"):
        train(config_for(tiny_run_inputs, out, train_files=[str(corpus)], max_steps=4, save_every=2, resume=True))
    with corpus.open("r+") as f:  # restored: what may change on resume (length, logging) is accepted
        f.truncate(train_file.stat().st_size)
    resumed = train(config_for(tiny_run_inputs, out, train_files=[str(corpus)], max_steps=3, save_every=2, log_every=2,
                               resume=True))
    assert resumed.steps == 3
