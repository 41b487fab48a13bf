"""Shared tools of the fault tests: real bit flips, byte-exact folder snapshots, a small tmpfs."""

import contextlib
import hashlib
import json
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (relative path -> digest): compare before and after."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def flip_bit(path: Path, offset: int, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


def safetensors_offset(path: Path, name: str) -> int:
    """File offset of the first byte of tensor `name` in a safetensors file."""
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
    return 8 + header_len + header[name]["data_offsets"][0]


@contextlib.contextmanager
def small_tmpfs(mount_point: Path, size: str):
    """A real file system of `size` (e.g. "20m") at `mount_point`; skips when mounting is not allowed."""
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the simulated disk-full tests cover it")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def largest_tensor_offset(torch_file: Path) -> int:
    """File offset of the data of the largest tensor in a torch.save zip (stored uncompressed)."""
    with zipfile.ZipFile(torch_file) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    with open(torch_file, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the zip local file header: name and extra-field lengths at bytes 26-29
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len
