"""Files that may come from anyone are loaded without running code, and a refusal reads as one line.

distilx loads weights through safetensors or `torch.load(weights_only=True)`, which refuses any
pickle holding more than tensors and plain containers. torch words that refusal as a paragraph
about PyTorch 2.6 defaults; `refusing_code(path)` turns it into one line naming the file.
"""

from __future__ import annotations

import os
import pickle
from contextlib import contextmanager
from pathlib import Path

__all__ = ["RefusedFileError", "refusing_code"]


class RefusedFileError(pickle.UnpicklingError, ValueError):
    """A file was not loaded because it holds pickled objects that could run code.

    An UnpicklingError (what torch raises) and a ValueError (bad input: the CLI prints one line)."""


def _reason(exc: BaseException) -> str:
    """The short reason inside torch's message ("Unsupported global: GLOBAL posix.system", ...)."""
    text = str(exc)
    _, _, after = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (after or text).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _pickled_files(path: Path) -> str:
    """`path`, or for a model folder the pickle-format weight files in it (what torch.load opened)."""
    if not path.is_dir():
        return os.fspath(path)
    found = sorted(p for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    return ", ".join(map(os.fspath, found)) or os.fspath(path)


@contextmanager
def refusing_code(path: str | os.PathLike):
    """Re-raise torch's weights-only refusal inside the block as a RefusedFileError naming the file
    (`path`, or the pickle files of the model folder `path`)."""
    try:
        yield
    except pickle.UnpicklingError as exc:
        if isinstance(exc, RefusedFileError):
            raise
        raise RefusedFileError(f"{_pickled_files(Path(path))}: refused to load: it holds pickled objects other than "
                               f"tensors and plain containers, which could run code ({_reason(exc)}); distilx only "
                               "loads safetensors files and weights-only pickles") from None
