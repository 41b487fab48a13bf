"""A full disk names the path it could not write and leaves nothing half-written behind: on real
small tmpfs mounts (skipped where mounting is not allowed) and simulated at the writer layer with
the exact errors the real writers raised on a full tmpfs (so the check runs everywhere)."""

import errno
import os

import pytest
import torch
from safetensors import SafetensorError

import distilx.checkpoint
from distilx import train
from distilx.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from distilx.diskfull import DiskFullError
from distilx.metrics_log import MetricsLog
from distilx.run_dir import RunFolder
from fault_helpers import small_tmpfs
from pipeline_helpers import corpus_slice, make_tiny_teacher, run_config

# what the writers said on a full tmpfs (recorded with torch 2.15, safetensors 0.8)
TORCH_FULL = "[enforce fail at inline_container.cc:671] . unexpected pos 576 vs 534"
SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


def assert_previous_checkpoint_intact(root):
    assert [p.name for p in list_checkpoints(root)] == ["step-00000001"]
    assert sorted(os.listdir(root)) == ["step-00000001"]  # no .tmp folder left
    model_state, state = load_checkpoint(root / "step-00000001")
    assert state["step"] == 1 and torch.equal(model_state["w"], torch.ones(4))


@pytest.mark.parametrize("big", ["model", "trainer_state"])
def test_a_checkpoint_on_a_full_tmpfs(tmp_path, big):
    """main: `[enforce fail at inline_container.cc:671] unexpected pos` (torch.save) or a SafetensorError,
    naming no path. Real 2 MiB tmpfs; the big part decides which writer meets the full disk."""
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        root = disk / "checkpoints"
        save_checkpoint(root, 1, {"w": torch.ones(4)}, {"step": 1})
        model = {"w": torch.randn(1_000_000) if big == "model" else torch.ones(4)}
        state = {"step": 2, "blob": torch.randn(1_000_000) if big == "trainer_state" else 0}
        with pytest.raises(DiskFullError, match=f"no space left on {root / 'step-00000002'} .*earlier checkpoints "
                                                "are intact.*MiB free"):
            save_checkpoint(root, 2, model, state)
        assert_previous_checkpoint_intact(root)


@pytest.mark.parametrize("layer", ["safetensors", "torch.save"])
def test_a_checkpoint_on_a_full_disk_simulated(tmp_path, monkeypatch, layer):
    """main: as above. The writer writes part of its file, then fails as it did on the real tmpfs."""
    root = tmp_path / "checkpoints"
    save_checkpoint(root, 1, {"w": torch.ones(4)}, {"step": 1})

    def half_written(error):
        def write(obj, path, *args, **kwargs):
            with open(path, "wb") as f:
                f.write(b"\0" * 1000)
            raise error
        return write

    if layer == "safetensors":
        monkeypatch.setattr(distilx.checkpoint, "save_file", half_written(SafetensorError(SAFETENSORS_FULL)))
    else:
        monkeypatch.setattr(torch, "save", half_written(RuntimeError(TORCH_FULL)))
    with pytest.raises(DiskFullError, match=f"no space left on {root / 'step-00000002'}"):
        save_checkpoint(root, 2, {"w": torch.zeros(4)}, {"step": 2})
    assert_previous_checkpoint_intact(root)


def test_a_metrics_line_on_a_full_tmpfs_is_whole_or_absent(tmp_path):
    """main: a full disk while appending metrics.jsonl left a half-written line. Real 1 MiB tmpfs: the
    kernel accepts the part of the line that fits in the file's last page, then refuses the rest."""
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        with RunFolder.claim(disk / "run") as run:
            log = MetricsLog(run, 0, use_tensorboard=False)
            log.write({"step": 1, "loss": 1.5})
            first = log.path.read_bytes()
            filler = disk / "filler"
            with open(filler, "wb", buffering=0) as f, pytest.raises(OSError):
                while True:  # fill the file system to the last byte
                    f.write(b"\0" * 4096)
            with pytest.raises(DiskFullError, match=f"no space left on {log.path} .*step 2 was not written"):
                log.write({"step": 2, "note": "x" * 6000})  # longer than the room left in the last page
            assert log.path.read_bytes() == first
            filler.unlink()
            log.write({"step": 2, "loss": 1.25})
            assert log.path.read_text().splitlines() == ['{"step": 1, "loss": 1.5}', '{"step": 2, "loss": 1.25}']


def test_a_short_metrics_write_simulated(tmp_path, monkeypatch):
    """main: as above. Simulated the way the real tmpfs behaved: a short write, then ENOSPC."""
    with RunFolder.claim(tmp_path / "run") as run:
        log = MetricsLog(run, 0, use_tensorboard=False)
        log.write({"step": 1, "loss": 1.5})
        real_write, calls = os.write, []

        def short_then_full(fd, data):
            calls.append(len(data))
            if len(calls) == 1:
                return real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", short_then_full)
        with pytest.raises(DiskFullError, match="no space left on .*metrics.jsonl"):
            log.write({"step": 2, "loss": 1.25})
        monkeypatch.undo()
        assert len(calls) == 2
        assert log.path.read_text() == '{"step": 1, "loss": 1.5}\n'


def test_the_final_save_on_a_full_tmpfs(tmp_path):
    """main: a raw SafetensorError traceback from save_pretrained. Real 18 MiB tmpfs: the step-2
    checkpoint (~16 MB) fits, the final student folder does not; metrics and checkpoint stay whole."""
    teacher = make_tiny_teacher(tmp_path / "teacher")
    train_file, heldout_file = corpus_slice(tmp_path)
    with small_tmpfs(tmp_path / "disk", "18m") as disk:
        out = disk / "run"
        with pytest.raises(DiskFullError, match=f"no space left on {out} \\(the run's outputs\\)"):
            train(run_config(teacher, train_file, heldout_file, out, max_steps=2, save_every=2, eval_batches=0))
        assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-00000002"]
        load_checkpoint(out / "checkpoints" / "step-00000002")
        assert [line[:10] for line in (out / "metrics.jsonl").read_text().splitlines()] == ['{"step": 1', '{"step": 2']
