"""A run owns its output folder: one process at a time, one run per folder, nothing foreign deleted.

distilx keeps two files of its own in the output folder:
- `.distilx-run.json`, the marker: the run's id, when it started, and every path distilx wrote
  there (recorded before the write, so a crash never leaves an unrecorded file of ours, and forgotten
  again when the write failed before creating it, so a name recorded is a file distilx wrote);
- `.distilx.lock`, locked with flock(LOCK_EX) by the process working in the folder and holding
  its pid and host. The kernel drops the lock when that process ends, however it ends (SIGKILL
  included), so a lock never outlives its run.

`RunFolder.claim` decides whether a run may use a folder:
- never the teacher's or the tokenizer's folder (compared as files: symlinks and relative paths
  do not hide it);
- a folder locked by a live process: refused at once;
- a new or empty folder, or one whose earlier run wrote nothing (it failed before its first output):
  claimed by a fresh run (new run id);
- a folder holding a distilx run: `resume` continues it (same run id); a fresh run is refused
  unless `overwrite`, which deletes exactly the paths that run recorded (its checkpoints by their
  owner.json) and nothing else;
- files distilx did not write (no marker, or left after an overwrite): refused, never deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import time
import warnings
from pathlib import Path, PurePath

from .checkpoint import files_not_from_a_save, latest_checkpoint, owned_checkpoint_folders, remove_checkpoint_files

__all__ = ["RunFolder", "OutputDirError", "MARKER", "LOCK"]

MARKER = ".distilx-run.json"
LOCK = ".distilx.lock"


class OutputDirError(ValueError):
    """The output folder cannot be used by this run; the message says why and what to do."""


def _ours(name: str) -> bool:
    """distilx's own bookkeeping files (the marker's temporary copy included)."""
    return name in (MARKER, LOCK) or name.startswith(MARKER + ".tmp-")


def _foreign_entries(path: Path) -> list[str]:
    """Everything in a folder without a marker except distilx's own bookkeeping files."""
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if not _ours(p.name))


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return os.path.realpath(a) == os.path.realpath(b)


def _refuse_protected(path: Path, protected: dict[str, str | os.PathLike | None]) -> None:
    for role, source in protected.items():
        if not source:
            continue
        folder = Path(source).parent if Path(source).is_file() else Path(source)  # a tokenizer may be a file
        if _same_folder(path, folder):
            raise OutputDirError(f"output_dir {path} is the {role}'s folder ({source}): the run would overwrite "
                                 f"the {role}'s files; pick another --output-dir")


def _read_marker(path: Path) -> dict | None:
    marker = path / MARKER
    if not marker.exists():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        if not (isinstance(data.get("run_id"), str) and isinstance(data.get("files"), list)):
            raise ValueError("missing run_id or files")
        return data
    except (OSError, ValueError, AttributeError) as exc:
        raise OutputDirError(f"{marker} is damaged ({exc}), so distilx cannot tell which files in {path} it "
                             "wrote; pick another --output-dir") from None


def _lock(path: Path) -> int:
    """flock the folder's lock file (non-blocking); returns the open descriptor that holds it."""
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "starting up"
        os.close(fd)
        raise OutputDirError(f"{path} is in use by another distilx process ({holder}); wait for it to end or "
                             "pick another --output-dir") from None
    except OSError as exc:  # a file system without flock (some network and FUSE mounts)
        warnings.warn(f"cannot lock {path / LOCK} ({exc.strerror}): nothing keeps a second process out of "
                      "this folder; run one process per folder", stacklevel=3)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return fd


def _safe_relative(name: str) -> bool:
    parts = PurePath(name).parts
    return bool(parts) and not PurePath(name).is_absolute() and ".." not in parts


def _recorded(marker: dict) -> set[str]:
    return {PurePath(name).as_posix() for name in marker["files"] if _safe_relative(name)}


def _left_after_removal(path: Path, marker: dict) -> list[str]:
    """What `_remove_recorded` would leave behind: entries the earlier run did not write."""
    recorded, left = _recorded(marker), []

    def visit(folder: Path, prefix: str) -> None:
        owned = set(owned_checkpoint_folders(folder, marker["run_id"])) if prefix else set()
        for entry in folder.iterdir():
            name = prefix + entry.name
            if not prefix and _ours(entry.name):
                continue
            if entry in owned:
                left.extend(f"{name}/{f}" for f in files_not_from_a_save(entry))
            elif name not in recorded:
                left.append(name)
            elif entry.is_dir() and not entry.is_symlink():
                visit(entry, name + "/")

    visit(path, "")
    return sorted(left)


def _remove_recorded(path: Path, marker: dict) -> None:
    """Delete what an earlier run recorded in its marker (deepest paths first) and nothing else."""
    for name in sorted(_recorded(marker), key=lambda n: len(PurePath(n).parts), reverse=True):
        target = path / name
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            for folder in owned_checkpoint_folders(target, marker["run_id"]):
                remove_checkpoint_files(folder)
            with contextlib.suppress(OSError):  # not empty: cannot happen after _left_after_removal
                target.rmdir()


class RunFolder:
    """The output folder of the run in this process: its run id, its lock, its record of written paths.

    Use as a context manager (or call `release`): leaving it unlocks the folder."""

    def __init__(self, path: Path, run_id: str, created: str, files: set[str], lock_fd: int):
        self.path, self.run_id, self.created = path, run_id, created
        self._files, self._lock_fd = files, lock_fd

    @classmethod
    def claim(cls, output_dir: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
              protected: dict[str, str | os.PathLike | None] | None = None) -> "RunFolder":
        """Lock `output_dir` for this process and decide whose run it holds (see the module doc).

        protected: {"teacher": folder, "tokenizer": file or folder} the run must never write into."""
        path = Path(output_dir)
        _refuse_protected(path, protected or {})
        if path.exists() and not path.is_dir():
            raise OutputDirError(f"output_dir {path} is a file, not a folder; pick another --output-dir")
        if _read_marker(path) is None and _foreign_entries(path):  # checked before creating anything here
            raise OutputDirError(cls._foreign_message(path, _foreign_entries(path)))
        path.mkdir(parents=True, exist_ok=True)
        fd = _lock(path)
        try:
            marker = _read_marker(path)  # again, now that nobody else can change it
            if marker is not None and not resume and not _recorded(marker):
                # an earlier run that stopped before writing anything (e.g. a bad teacher path) owns
                # nothing: its folder is as good as empty, so a corrected retry needs no flag
                foreign = _foreign_entries(path)
                if foreign:
                    raise OutputDirError(cls._foreign_message(path, foreign))
                marker = None
            if marker is not None and resume:
                return cls(path, marker["run_id"], marker.get("created", "?"), set(marker["files"]), fd)
            if marker is not None:
                if not overwrite:
                    newest = latest_checkpoint(path / "checkpoints")
                    progress = f", newest checkpoint {newest.name}" if newest else ""
                    raise OutputDirError(
                        f"{path} holds another distilx run (run {marker['run_id']} started {marker.get('created')}"
                        f"{progress}): continue it with --resume, pick another --output-dir, or replace it with "
                        "--overwrite-output-dir (deletes only the files that run wrote)")
                foreign = _left_after_removal(path, marker)
                if foreign:  # decided before deleting anything: an overwrite happens whole or not at all
                    raise OutputDirError(cls._foreign_message(path, foreign))
                _remove_recorded(path, marker)
            run = cls(path, secrets.token_hex(8), time.strftime("%Y-%m-%d %H:%M:%S"), set(), fd)
            run._write_marker()
            return run
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _foreign_message(path: Path, foreign: list[str]) -> str:
        return (f"{path} holds files distilx did not write ({_listing(foreign)}); distilx never deletes those: "
                "move them away or pick a new or empty --output-dir")

    # -- what distilx writes ---------------------------------------------------------------------
    def _write_marker(self) -> None:
        data = {"format": 1, "run_id": self.run_id, "created": self.created, "files": sorted(self._files)}
        tmp = self.path / f"{MARKER}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / MARKER)

    def record(self, *names: str) -> None:
        """Note paths (relative to the folder) that distilx is about to write: an overwrite deletes them."""
        new = set(names) - self._files
        if new:
            self._files |= new
            self._write_marker()

    def _snapshot(self, names: tuple[str, ...]) -> set[str]:
        found = {p.name for p in self.path.iterdir()}
        for name in names:
            folder = self.path / name
            if folder.is_dir() and not folder.is_symlink():
                found |= {p.relative_to(self.path).as_posix() for p in folder.rglob("*")}
        return found

    @contextlib.contextmanager
    def writing(self, *names: str):
        """Record `names` before the block and whatever else appears (in the folder or inside those
        folders) during it: for writers whose file names are not known in advance (save_pretrained
        shards, TensorBoard event files). A name that does not exist after the block (the writer failed
        before creating it, e.g. the plot without matplotlib) is forgotten again: the marker lists only
        what distilx wrote, so an overwrite never deletes a file someone else put there later."""
        self.record(*names)
        before = self._snapshot(names)
        try:
            yield
        finally:
            unwritten = {n for n in names if not os.path.lexists(self.path / n)}
            if unwritten & self._files:
                self._files -= unwritten
                self._write_marker()
            self.record(*(self._snapshot(names) - before))

    # -- the lock --------------------------------------------------------------------------------
    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
