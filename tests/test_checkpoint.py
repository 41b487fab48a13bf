"""Atomic checkpoints: SIGKILL while writing, last-K pruning, no pickled code on load, RNG round trip."""

import hashlib
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from distilx.checkpoint import (capture_rng, latest_checkpoint, list_checkpoints, load_checkpoint, restore_rng,
                                save_checkpoint)


def forge_manifest(path):
    """Rewrite a checkpoint's manifest to match its files as they are now (what an attacker would do)."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (path / name).read_bytes()
        entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (path / "manifest.json").write_text(json.dumps(manifest))


def small_state(seed):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(8, 4, generator=g), "b": torch.randn(4, generator=g)}


def test_round_trip_and_keep_last(tmp_path):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model.state_dict(),
                        {"optimizer": opt.state_dict(), "step": step, "stream": [{"position": [0, step]}]}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
    model_state, state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["step"] == 4 and state["stream"][0]["position"] == [0, 4]
    for k, v in model.state_dict().items():
        assert torch.equal(model_state[k], v)
    fresh = torch.optim.AdamW(torch.nn.Linear(4, 3).parameters())
    fresh.load_state_dict(state["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_tied_weights_are_saved(tmp_path):
    emb = torch.nn.Parameter(torch.randn(10, 4))
    state = {"embeddings.weight": emb.data, "projector.weight": emb.data}  # the same storage twice
    path = save_checkpoint(tmp_path, 1, state, {"step": 1})
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded["embeddings.weight"], loaded["projector.weight"])


def test_non_finite_weights_are_never_saved(tmp_path):
    state = small_state(0)
    state["w"][0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite"):
        save_checkpoint(tmp_path, 1, state, {"step": 1})
    assert list_checkpoints(tmp_path) == []


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch may note the foreign pickle protocol
def test_loading_never_unpickles_code(tmp_path):
    path = save_checkpoint(tmp_path, 1, small_state(0), {"step": 1})
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(path / "trainer_state.pt", "wb") as f:  # a hostile file in place of the trainer state
        pickle.dump({"step": Evil()}, f)
    forge_manifest(path)  # the checksums catch accidents, not attackers: the load itself must refuse
    with pytest.raises(pickle.UnpicklingError) as refused:
        load_checkpoint(path)
    assert not marker.exists()
    message = str(refused.value)  # one line naming the file and why (main: torch's paragraph, no file)
    assert str(path / "trainer_state.pt") in message and "could run code" in message and "\n" not in message


def test_rng_round_trip():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(state)
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_sigkill_while_writing_leaves_previous_checkpoint_loadable(tmp_path):
    # A child writes checkpoint 1, then keeps writing large checkpoints; it is killed with SIGKILL
    # in the middle of one. The folder must still yield a complete, loadable checkpoint.
    script = textwrap.dedent(f"""
        import sys, torch
        from distilx.checkpoint import save_checkpoint
        save_checkpoint({str(tmp_path)!r}, 1, {{"w": torch.ones(4)}}, {{"step": 1}}, keep_last=100)
        print("first", flush=True)
        big = {{"w": torch.randn(12_000_000)}}  # ~48 MB per write
        step = 2
        while True:
            save_checkpoint({str(tmp_path)!r}, step, big, {{"step": step, "blob": torch.randn(4_000_000)}}, keep_last=100)
            step += 1
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "first"
        time.sleep(1.5)  # several writes in flight or done
        half_written = None
        for _ in range(400):  # kill while a temporary folder exists, i.e. mid-write
            tmps = list(tmp_path.glob("step-*.tmp-*"))
            if tmps:
                half_written = tmps[0]
                break
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    complete = list_checkpoints(tmp_path)
    assert complete, "the first checkpoint must survive"
    for ckpt in complete:  # every folder that looks complete loads completely
        model_state, state = load_checkpoint(ckpt)
        assert int(ckpt.name.split("-")[1]) == state["step"]
    assert half_written is not None, "the kill should land during a write"
    latest = latest_checkpoint(tmp_path)
    assert ".tmp-" not in latest.name
    # the next save clears the debris of the killed writer
    save_checkpoint(tmp_path, 10_000, {"w": torch.ones(4)}, {"step": 10_000}, keep_last=100)
    assert not list(tmp_path.glob("step-*.tmp-*"))


def test_only_this_runs_abandoned_tmp_folders_are_removed(tmp_path):
    """main: every `step-*.tmp-*` folder was deleted at the next save, whoever wrote it and whether its
    writer was still alive (a second process deleted the first's checkpoint in progress)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # the pid of a process that has ended
    alive = str(os.getppid())
    mine_dead = tmp_path / f"step-00000002.tmp-aaaa-{dead}"
    mine_alive = tmp_path / f"step-00000002.tmp-aaaa-{alive}"
    other_run = tmp_path / f"step-00000002.tmp-bbbb-{dead}"
    user_folder = tmp_path / "step-99999999.tmp-1"
    for folder in (mine_dead, mine_alive, other_run, user_folder):
        folder.mkdir()
        (folder / ".tmpXYZ").write_bytes(b"partial")  # what a killed safetensors writer leaves
    save_checkpoint(tmp_path, 1, {"w": torch.ones(4)}, {"step": 1}, run_id="aaaa")
    assert not mine_dead.exists()
    assert mine_alive.exists() and other_run.exists() and (user_folder / ".tmpXYZ").read_bytes() == b"partial"
