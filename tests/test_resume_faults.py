"""Resuming after real damage: a flipped bit or a truncated file in the newest checkpoint is named
and the run falls back to the newest intact one, ending bit-identical to an uninterrupted run; only
damaged checkpoints give one line naming each; a torn metrics line is dropped with a warning; a real
full disk (a small tmpfs) stops the run with "no space left on <path>" and the run resumes once
there is room."""

import json
import os
import shutil
import subprocess
import warnings

import pytest
import torch
from safetensors.torch import load_file

from distilx import train
from distilx.checkpoint import list_checkpoints, verify_checkpoint
from distilx.cli import main
from fault_helpers import flip_bit, largest_tensor_offset, safetensors_offset, small_tmpfs
from pipeline_helpers import run_config

WEIGHT = "distilbert.transformer.layer.0.ffn.lin1.weight"


def config_for(tiny_run_inputs, out, **kw):
    # checkpoints at steps 2, 4 and 6; all three kept
    return run_config(*tiny_run_inputs, out, **{"eval_batches": 0, "max_steps": 6, "save_every": 2, "keep_last": 3,
                                                 **kw})


def losses(run_dir):
    return [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def reference(tiny_run_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    return out, train(config_for(tiny_run_inputs, out)).student.state_dict()


@pytest.fixture(scope="module")
def interrupted(tiny_run_inputs, tmp_path_factory):
    """A run stopped after step 5: checkpoints 2 and 4, five metric records."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    train(config_for(tiny_run_inputs, out), stop_after=5)
    return out


def copy_of(run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run, target, symlinks=True)
    return target


def assert_same_as_reference(result, run, reference):
    ref_dir, ref_state = reference
    assert result.steps == 6
    for (name, a), b in zip(ref_state.items(), result.student.state_dict().values()):
        assert torch.equal(a, b), name
    assert losses(run) == losses(ref_dir)


@pytest.mark.parametrize("damaged_file", ["model.safetensors", "trainer_state.pt"])
def test_a_flipped_bit_is_named_and_the_run_falls_back(tiny_run_inputs, reference, interrupted, tmp_path, damaged_file):
    """main: one flipped bit in model.safetensors or trainer_state.pt was accepted: the resumed run
    trained on with a weight of -4.3e36 and saved it."""
    run = copy_of(interrupted, tmp_path)
    target = run / "checkpoints" / "step-00000004" / damaged_file
    if damaged_file == "model.safetensors":
        flip_bit(target, safetensors_offset(target, WEIGHT) + 3, 6)  # the exponent of the first weight
        garbage = load_file(target)[WEIGHT].abs().max()  # the file still loads: only a checksum can tell
    else:
        flip_bit(target, largest_tensor_offset(target) + 3, 6)
        state = torch.load(target, weights_only=True)
        garbage = max(s["exp_avg"].abs().max() for s in state["optimizer"]["state"].values())
    assert garbage > 1e30
    with pytest.warns(UserWarning, match=f"step-00000004 is damaged: {damaged_file} does not match its sha256 .*"
                                         "resuming from the older step-00000002"):
        result = train(config_for(tiny_run_inputs, run, resume=True))
    assert_same_as_reference(result, run, reference)
    assert (run / "checkpoints" / "step-00000004.damaged" / damaged_file).is_file()  # kept for inspection
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-00000002", "step-00000004",
                                                                        "step-00000006"]


def test_truncated_and_empty_files_are_named(tiny_run_inputs, reference, interrupted, tmp_path, capsys):
    """main: truncated or empty checkpoint files ended in a raw SafetensorError / RuntimeError
    traceback that named no checkpoint and did not fall back."""
    run = copy_of(interrupted, tmp_path)
    state_file = run / "checkpoints" / "step-00000004" / "trainer_state.pt"
    size = state_file.stat().st_size
    os.truncate(state_file, size // 2)
    with pytest.warns(UserWarning, match=f"trainer_state.pt has {size // 2} bytes, the manifest says {size}"):
        result = train(config_for(tiny_run_inputs, run, resume=True))
    assert_same_as_reference(result, run, reference)

    # every checkpoint damaged: one line naming each, no training from garbage, nothing renamed
    broken = copy_of(interrupted, tmp_path / "broken")
    os.truncate(broken / "checkpoints" / "step-00000004" / "model.safetensors", 0)
    (broken / "checkpoints" / "step-00000002" / "manifest.json").write_text("")
    capsys.readouterr()
    assert main(["train", "--config", str(broken / "train_config.json"), "--output-dir", str(broken),
                 "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "no intact checkpoint" in err and "step-00000004 is damaged: model.safetensors has 0 bytes" in err
    assert "step-00000002: manifest.json is damaged" in err
    assert [p.name for p in list_checkpoints(broken / "checkpoints")] == ["step-00000002", "step-00000004"]


def test_a_torn_metrics_line_is_dropped_on_resume(tiny_run_inputs, reference, interrupted, tmp_path):
    """main: a half-written last line in metrics.jsonl made --resume fail on a JSON parse error that
    named no file."""
    run = copy_of(interrupted, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "loss": 7.12')  # what a full disk or a crash mid-write leaves
    with pytest.warns(UserWarning, match=r"metrics\.jsonl: dropped a torn last line"):
        result = train(config_for(tiny_run_inputs, run, resume=True))
    assert_same_as_reference(result, run, reference)


def test_a_full_disk_during_a_checkpoint_is_named_and_resumable(tiny_run_inputs, reference, tmp_path, capsys):
    """main: a full disk during a checkpoint write said `[enforce fail at inline_container.cc:671]
    unexpected pos` (or a SafetensorError), naming no path. Here on a real 24 MiB tmpfs: the first
    checkpoint (~16 MB) fits, the second does not."""
    with small_tmpfs(tmp_path / "disk", "24m") as disk:
        out = disk / "run"
        capsys.readouterr()
        config = config_for(tiny_run_inputs, out)
        code = main(["train", "--teacher", config.teacher, "--train-files", config.train_files[0], "--output-dir",
                     str(out), "--student-layers", "2", "--seq-len", "48", "--batch-size", "8", "--max-steps", "6",
                     "--save-every", "2", "--keep-last", "3", "--log-every", "1", "--seed", "7", "--kl-on",
                     "targets", "--progress", "false", "--tensorboard", "false", "--eval-batches", "0",
                     "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err and err.count("\n") == 1
        assert f"the run stopped: no space left on {out / 'checkpoints' / 'step-00000004'}" in err
        assert "the earlier checkpoints are intact" in err
        assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-00000002"]
        verify_checkpoint(out / "checkpoints" / "step-00000002")
        assert sorted(os.listdir(out / "checkpoints")) == ["step-00000002"]  # the .tmp folder is gone
        # room again: the run continues from step 2 and ends as if nothing had happened
        subprocess.run(["mount", "-o", "remount,size=80m", str(disk)], check=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing damaged, nothing torn
            result = train(config_for(tiny_run_inputs, out, resume=True))
        assert_same_as_reference(result, out, reference)
