"""Atomic, checksummed checkpoints with exact resume, and loads that never run pickled code.

A checkpoint is a folder `checkpoints/step-00000100/` holding
- `model.safetensors`: the student's weights (safetensors: plain tensors, nothing executable);
- `trainer_state.pt`: optimizer, scheduler, grad scaler, data-stream position, RNG states and step
  counters, loaded with `torch.load(weights_only=True)` (tensors and plain containers only);
- `owner.json`: which run wrote it (run id, process, host) and that run's identity (what
  `run_identity` records: teacher, tokenizer, corpus, student shape, settings);
- `manifest.json`: size and sha256 of each of the three files above, written last.

Atomicity: everything is written into `step-XXXXXXXX.tmp-<run id>-<pid>/`, each file fsync'ed, then
the folder is renamed into place and the parent fsync'ed. A process killed (even by SIGKILL) while
writing leaves only a `.tmp-*` folder, which `list_checkpoints` ignores; a later save of the same
run removes it once its writer is dead (likewise a `.removing-*` folder: a pruning cut short). A
failed write (a full disk) removes its `.tmp` folder at once and says "no space left on <path>";
the previous checkpoints are untouched.

Integrity: loading checks every file against the manifest first, so a flipped bit or a truncated
file is reported by name (`CheckpointError`) instead of being trained on, and
`newest_intact_checkpoint` falls back to the newest checkpoint that is intact, saying so.

Ownership: pruning (`keep_last`) touches only checkpoints whose owner.json names the writing run,
and in them only the files a save creates; a `.tmp` folder (wholly the save's: the writers put
their own temporary files there too) is removed only when its name carries the writing run's id
and its writer process is gone. Anything else in the folder is left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import socket
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .diskfull import reporting_disk_full
from .safe_loading import refusing_code

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints", "newest_intact_checkpoint",
           "verify_checkpoint", "checkpoint_owner", "owned_checkpoint_folders", "remove_checkpoint_files",
           "files_not_from_a_save",
           "CheckpointError", "capture_rng", "restore_rng"]

_NAME = re.compile(r"^step-(\d{8})$")
# a save in progress (.tmp) or a removal in progress (.removing), by run id and process
_TMP = re.compile(r"^step-\d{8}\.(?:tmp|removing)-(?P<run>[0-9a-f]+|anon)-(?P<pid>\d+)$")
MODEL_FILE, STATE_FILE, OWNER_FILE, MANIFEST_FILE = ("model.safetensors", "trainer_state.pt", "owner.json",
                                                     "manifest.json")
_CHECKED_FILES = (MODEL_FILE, STATE_FILE, OWNER_FILE)
_SAVED_FILES = (*_CHECKED_FILES, MANIFEST_FILE)  # everything a save leaves in a finished checkpoint


class CheckpointError(ValueError):
    """A checkpoint is incomplete, damaged or unreadable; the message names it and the file."""


def capture_rng() -> dict:
    """Every RNG a training step may draw from, in weights_only-loadable form (no numpy objects)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "python_gauss": random.getstate()[2],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    py = state["python"]
    random.setstate((py[-1], tuple(py[:-1]), state["python_gauss"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (half-written `.tmp-*` folders excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(root: str | Path) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def checkpoint_owner(path: str | Path) -> dict | None:
    """The owner record of a checkpoint folder (run_id, identity, pid, host), None if unreadable."""
    try:
        owner = json.loads((Path(path) / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _owned_by(path: Path, run_id: str | None) -> bool:
    owner = checkpoint_owner(path)
    return owner is not None and owner.get("run_id") == run_id


def _process_gone(pid: int) -> bool:
    """Is no live process `pid` on this machine? (A zombie is gone; our own pid is an earlier failed save.)"""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _stale_tmp_folders(root: Path, run_id: str | None) -> list[Path]:
    """`.tmp` folders of run `run_id` whose writer process is gone (safe to delete)."""
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _TMP.match(p.name)
        if m and p.is_dir() and m["run"] == (run_id or "anon") and _process_gone(int(m["pid"])):
            out.append(p)
    return out


def owned_checkpoint_folders(root: str | Path, run_id: str | None) -> list[Path]:
    """Every folder under `root` that run `run_id` wrote: checkpoints (also set-aside ones, by their
    owner.json) and `.tmp` folders whose writer is gone (by their name)."""
    root = Path(root)
    if not root.is_dir():
        return []
    owned = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name.startswith("step-")
             and not _TMP.match(p.name) and _owned_by(p, run_id)]
    return sorted(owned + _stale_tmp_folders(root, run_id))


def files_not_from_a_save(folder: Path) -> list[str]:
    """Names inside a checkpoint folder that no save created (a `.tmp` folder is wholly the save's:
    the writers' own temporary files land there too)."""
    if _TMP.match(folder.name):
        return []
    return sorted(name for name in os.listdir(folder) if name not in _SAVED_FILES)


def remove_checkpoint_files(folder: Path) -> bool:
    """Delete what a checkpoint save created in `folder`, and the folder when nothing else is inside.

    A checkpoint is first renamed `.removing-<run id>-<pid>` (one rename), so that a kill halfway
    through leaves a folder that the run's next save removes like an abandoned `.tmp`, never one
    that nobody owns. With a foreign file inside, only the save's files go (owner.json last, so the folder stays
    attributable until the end) and the folder stays. A checkpoint that is a symbolic link (moved elsewhere by
    hand) loses the link only: its target is not this run's to delete. Returns whether the folder is gone."""
    if folder.is_symlink():
        folder.unlink()
        return True
    if not _TMP.match(folder.name):
        if files_not_from_a_save(folder):
            for name in (MANIFEST_FILE, MODEL_FILE, STATE_FILE, OWNER_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
            return False
        run_id = (checkpoint_owner(folder) or {}).get("run_id") or "anon"
        doomed = folder.with_name(f"{folder.name[:len('step-00000000')]}.removing-{run_id}-{os.getpid()}")
        shutil.rmtree(doomed, ignore_errors=True)  # this process's own, from an earlier removal cut short
        os.rename(folder, doomed)
        folder = doomed
    shutil.rmtree(folder, ignore_errors=True)
    return not folder.exists()


def _set_aside(path: Path, why: str) -> Path:
    """Rename `path` to `<name>.<why>` (or `<name>.<why>-N`) so that nothing picks or overwrites it."""
    target, n = path.with_name(f"{path.name}.{why}"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{why}-{n}")
    os.rename(path, target)
    return target


def save_checkpoint(root: str | Path, step: int, model_state: dict, trainer_state: dict,
                    keep_last: int = 3, *, run_id: str | None = None, identity: dict | None = None) -> Path:
    """Write checkpoint `step` atomically under `root`, then keep only the newest `keep_last` of this run.

    model_state: a state_dict of tensors (tied weights are stored once per name, as copies);
    trainer_state: tensors, numbers, strings and containers of them (what weights_only loads);
    run_id / identity: the writing run and its identity (see run_identity), stored in owner.json;
    pruning and clean-up touch only checkpoints of the same run_id (None: checkpoints without one).
    Refuses to write non-finite weights. A full disk raises DiskFullError naming the checkpoint.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in _stale_tmp_folders(root, run_id):  # left by a killed writer of this run
        remove_checkpoint_files(stale)
    bad = [k for k, v in model_state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FloatingPointError(f"refusing to checkpoint non-finite weights ({len(bad)} tensors, e.g. {bad[0]})")
    final = root / f"step-{step:08d}"
    tmp = root / f"{final.name}.tmp-{run_id or 'anon'}-{os.getpid()}"
    tmp.mkdir()
    try:
        with reporting_disk_full(final, "checkpoint not written; the earlier checkpoints are intact"):
            _write_json(tmp / OWNER_FILE, {"run_id": run_id, "identity": identity, "step": step,
                                           "pid": os.getpid(), "host": socket.gethostname()})
            # safetensors refuses tensors that share storage (tied embeddings): store contiguous copies.
            tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model_state.items()}
            save_file(tensors, str(tmp / MODEL_FILE), metadata={"step": str(step)})
            torch.save(trainer_state, tmp / STATE_FILE)
            files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name)}
                     for name in _CHECKED_FILES}
            _write_json(tmp / MANIFEST_FILE, {"format": 1, "step": step, "files": files})
            for f in tmp.iterdir():
                _fsync_file(f)
            _fsync_dir(tmp)
    except BaseException:
        remove_checkpoint_files(tmp)  # our own half-written folder
        raise
    if final.exists():  # the same step saved twice (e.g. resumed and stopped at once)
        if not (_owned_by(final, run_id) and remove_checkpoint_files(final)):
            moved = _set_aside(final, "replaced")
            warnings.warn(f"{final} was not written by this run; moved it to {moved.name}", stacklevel=2)
    os.rename(tmp, final)
    _fsync_dir(root)
    mine = [c for c in list_checkpoints(root) if _owned_by(c, run_id)]
    for old in mine[:-keep_last]:
        remove_checkpoint_files(old)
    return final


def verify_checkpoint(path: str | Path) -> dict:
    """Check every file of a checkpoint against its manifest; returns its owner record.

    Raises CheckpointError naming the checkpoint and the first file that is missing, truncated or
    altered (sha256), or a missing/damaged manifest."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} has no {MANIFEST_FILE}: it is unfinished or was not written "
                              "by this version of distilx") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: {MANIFEST_FILE} is damaged ({exc})") from None
    for name in _CHECKED_FILES:
        f, expected = path / name, files.get(name) if isinstance(files, dict) else None
        if not isinstance(expected, dict):
            raise CheckpointError(f"checkpoint {path}: {MANIFEST_FILE} lists no checksum for {name}")
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is damaged: {name} is missing")
        size = f.stat().st_size
        if size != expected.get("bytes"):
            raise CheckpointError(f"checkpoint {path} is damaged: {name} has {size} bytes, the manifest says "
                                  f"{expected.get('bytes')} (truncated or replaced)")
        if file_sha256(f) != expected.get("sha256"):
            raise CheckpointError(f"checkpoint {path} is damaged: {name} does not match its sha256 in the manifest "
                                  "(altered on disk)")
    owner = checkpoint_owner(path)
    if owner is None:
        raise CheckpointError(f"checkpoint {path}: {OWNER_FILE} is unreadable")
    return owner


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """(model_state, trainer_state) of a checkpoint folder, after `verify_checkpoint`.

    Never unpickles arbitrary objects: a hostile trainer_state.pt raises RefusedFileError (an
    UnpicklingError) naming the file; any damage raises CheckpointError naming the checkpoint."""
    path = Path(path)
    model_file, state_file = path / MODEL_FILE, path / STATE_FILE
    if not (model_file.is_file() and state_file.is_file()):
        raise CheckpointError(f"{path} is not a complete distilx checkpoint (needs {MODEL_FILE} and {STATE_FILE})")
    verify_checkpoint(path)
    try:
        model_state = load_file(str(model_file), device=str(map_location))
    except Exception as exc:  # SafetensorError and friends: the file verified but does not parse
        raise CheckpointError(f"checkpoint {path}: {MODEL_FILE} is unreadable ({exc})") from None
    with refusing_code(state_file):
        try:
            trainer_state = torch.load(state_file, map_location=map_location, weights_only=True)
        except (RuntimeError, EOFError, OSError) as exc:
            raise CheckpointError(f"checkpoint {path}: {STATE_FILE} is unreadable ({exc})") from None
    return model_state, trainer_state


def newest_intact_checkpoint(root: str | Path, run_id: str | None = None) -> tuple[Path, dict] | None:
    """(path, owner record) of the newest checkpoint of run `run_id` under `root` that verifies.

    Newer checkpoints that are damaged (or belong to another run) are renamed to `<name>.damaged`
    (`<name>.other-run`) so that nothing resumes from or overwrites them, each with a warning that
    names it and the checkpoint used instead. None when `root` holds no checkpoint; CheckpointError
    when it holds only unusable ones."""
    root = Path(root)
    unusable: list[tuple[Path, str, str]] = []  # (checkpoint, why, suffix)
    for ckpt in reversed(list_checkpoints(root)):
        try:
            owner = verify_checkpoint(ckpt)
        except CheckpointError as exc:
            unusable.append((ckpt, str(exc), "damaged"))
            continue
        if owner.get("run_id") != run_id:
            unusable.append((ckpt, f"checkpoint {ckpt} belongs to run {owner.get('run_id')}, not to this folder's "
                                   f"run {run_id}", "other-run"))
            continue
        for bad, why, suffix in unusable:
            moved = _set_aside(bad, suffix)
            warnings.warn(f"{why}; resuming from the older {ckpt.name} instead (the unusable one is kept as "
                          f"{moved.name})", stacklevel=2)
        return ckpt, owner
    if unusable:
        raise CheckpointError(f"no intact checkpoint under {root}: " + "; ".join(why for _, why, _ in unusable)
                              + ". Start a new run (another --output-dir, or --overwrite-output-dir)")
    return None
