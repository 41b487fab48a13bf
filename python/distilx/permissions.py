"""The permissions of the files distilx writes: what a plain open() gives under the process umask.

safetensors writes its files 0600 (through a private temporary file), while every other output —
config.json, tokenizer files, metrics — gets 0644 under the usual umask 022; a model.safetensors that the
others who can read the folder cannot read is a surprise, so distilx widens it to the umask's rule.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["usual_permissions"]


def usual_permissions(*paths: str | os.PathLike) -> None:
    """chmod each existing regular file (not a symlink) in `paths` to 0666 & ~umask."""
    mask = os.umask(0)
    os.umask(mask)  # reading the umask means setting it; put it back at once
    for path in map(Path, paths):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~mask)
