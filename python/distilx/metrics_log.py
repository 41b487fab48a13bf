"""metrics.jsonl, written so that a crash or a full disk never leaves half a line behind.

Each record is one complete line handed to the kernel in one `write` on an O_APPEND descriptor. If
the disk fills up mid-line, the file is cut back to its last whole line and the run stops with
"no space left on <file>". A line torn anyway (power loss) is dropped, with a warning naming the
file, when a resumed run or `read_records` reads it; a damaged line elsewhere is an error naming
the file and the line. TensorBoard scalars go along when TensorBoard is installed.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from .diskfull import reporting_disk_full
from .run_dir import RunFolder

__all__ = ["MetricsLog", "read_records"]


def _parse(path: Path) -> tuple[list[dict], list[int]]:
    """The records of a metrics.jsonl and the byte offset just after each one's line.

    A torn last line (no newline after it and not JSON) is dropped with a warning naming the file;
    a damaged line elsewhere raises ValueError naming the file and the line."""
    data = path.read_bytes()
    records, ends, offset = [], [], 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        offset += len(line) + 1
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
            ends.append(min(offset, len(data)))
        except ValueError:
            if number == len(lines):  # no newline after it: the last write was cut short
                warnings.warn(f"{path}: dropped a torn last line ({len(line)} bytes, written when the process "
                              "died or the disk filled up)", stacklevel=3)
                continue
            raise ValueError(f"{path}, line {number}, is not a JSON record: {line[:80]!r}; delete that line "
                             "(the other records stay usable)") from None
    return records, ends


def read_records(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl (a torn last line is dropped with a warning naming the file)."""
    return _parse(Path(path))[0]


class MetricsLog:
    """metrics.jsonl (always) and TensorBoard scalars (when installed) in the run's folder, on rank 0.

    resume_step > 0 keeps the records up to that step (the checkpoint resumed from) and drops the
    later ones, which the resumed run writes again."""

    def __init__(self, run: RunFolder, resume_step: int, use_tensorboard: bool):
        self.path = run.path / "metrics.jsonl"
        run.record(self.path.name)
        if resume_step > 0 and self.path.is_file():
            records, ends = _parse(self.path)
            kept = next((i for i, r in enumerate(records) if r.get("step", 0) > resume_step), len(records))
            os.truncate(self.path, ends[kept - 1] if kept else 0)  # one call: no half-rewritten file
        else:  # created now, as recorded (an earlier attempt's log, ours, starts over)
            self.path.write_bytes(b"")
        self.writer = None
        if use_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: JSONL only
                return
            with run.writing("tensorboard"):  # its event file names are chosen by TensorBoard
                self.writer = SummaryWriter(str(run.path / "tensorboard"), purge_step=resume_step or None)

    def write(self, record: dict) -> None:
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            whole = os.fstat(fd).st_size
            with reporting_disk_full(self.path, f"the record of step {record.get('step')} was not written"):
                try:
                    written = os.write(fd, line)
                    while written < len(line):  # a short write: the disk is (nearly) full
                        written += os.write(fd, line[written:])
                except OSError:
                    os.ftruncate(fd, whole)  # back to the last whole line
                    raise
        finally:
            os.close(fd)
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
