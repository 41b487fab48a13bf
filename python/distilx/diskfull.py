"""A full disk, however the writer reports it, becomes one error: "no space left on <path>".

Python's own writes raise OSError(ENOSPC) (or EDQUOT for a quota); safetensors says
"No space left on device (os error 28)" inside a SafetensorError; torch.save's zip writer only
notices a short write and says "[enforce fail at inline_container.cc:...] unexpected pos N vs M".
The writers of distilx (checkpoints, metrics, the final outputs) wrap their writes in
`reporting_disk_full(path)` so the user reads which path could not be written, with the free space.
"""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

__all__ = ["DiskFullError", "is_disk_full", "reporting_disk_full"]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# what the non-Python writers say when a write came up short
_NO_SPACE_TEXT = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")


class DiskFullError(OSError):
    """A write failed because the file system is full; the message names the path."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:  # without OSError's "[Errno 28]" prefix: the message says it
        return self.strerror


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, DiskFullError):
        return False  # already reported; let it through unchanged
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
        return True
    text = str(exc)
    # torch's zip writer; its reader's errors also cite inline_container.cc, but never "unexpected pos"
    torch_short_write = ("inline_container" in text and "unexpected pos" in text) or \
        "PytorchStreamWriter failed writing" in text
    return torch_short_write or any(s in text for s in _NO_SPACE_TEXT)


def _free_space(path: Path) -> str:
    for candidate in (path, *path.parents):
        if candidate.exists():
            free = shutil.disk_usage(candidate).free
            return f"{free / 2**20:.1f} MiB free"
    return "free space unknown"


@contextmanager
def reporting_disk_full(path: str | os.PathLike, what: str = ""):
    """Re-raise a disk-full failure inside the block as DiskFullError naming `path` (and `what`)."""
    try:
        yield
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        # the file the OS named, when it did (e.g. a cache written elsewhere), else the writer's path
        path = Path(exc.filename if isinstance(exc, OSError) and exc.filename else path)
        detail = f" ({what})" if what else ""
        raise DiskFullError(f"no space left on {path}{detail}; {_free_space(path)} there. Free some space "
                            "and continue with --resume") from exc
