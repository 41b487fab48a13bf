"""Atomic checkpoints with exact resume, and loads that never run pickled code.

A checkpoint is a folder `checkpoints/step-00000100/` holding
- `model.safetensors`: the student's weights (safetensors: plain tensors, nothing executable);
- `trainer_state.pt`: optimizer, scheduler, grad scaler, data-stream position, RNG states and step
  counters, loaded with `torch.load(weights_only=True)` (tensors and plain containers only).

Atomicity: everything is written into `step-XXXXXXXX.tmp-<pid>/`, each file fsync'ed, then the folder
is renamed into place and the parent fsync'ed. A process killed (even by SIGKILL) while writing
leaves only a `.tmp-*` folder, which `latest_checkpoint` ignores and the next save removes: the
previous checkpoint stays loadable.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints",
           "capture_rng", "restore_rng"]

_NAME = re.compile(r"^step-(\d{8})$")


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


def save_checkpoint(root: str | Path, step: int, model_state: dict, trainer_state: dict,
                    keep_last: int = 3) -> Path:
    """Write checkpoint `step` atomically under `root`, then keep only the newest `keep_last`.

    model_state: a state_dict of tensors (tied weights are stored once per name, as copies);
    trainer_state: tensors, numbers, strings and containers of them (what weights_only loads).
    Refuses to write non-finite weights.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("step-*.tmp-*"):  # left by a killed writer
        shutil.rmtree(stale, ignore_errors=True)
    bad = [k for k, v in model_state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FloatingPointError(f"refusing to checkpoint non-finite weights ({len(bad)} tensors, e.g. {bad[0]})")
    final = root / f"step-{step:08d}"
    tmp = root / f"{final.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    # safetensors refuses tensors that share storage (tied embeddings): store contiguous copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model_state.items()}
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"step": str(step)})
    torch.save(trainer_state, tmp / "trainer_state.pt")
    for f in tmp.iterdir():
        _fsync_file(f)
    _fsync_dir(tmp)
    if final.exists():  # the same step saved twice (e.g. resumed and stopped at once)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """(model_state, trainer_state) of a checkpoint folder; never unpickles arbitrary objects."""
    path = Path(path)
    model_file, state_file = path / "model.safetensors", path / "trainer_state.pt"
    if not (model_file.is_file() and state_file.is_file()):
        raise FileNotFoundError(f"{path} is not a complete distilx checkpoint (needs model.safetensors "
                                "and trainer_state.pt)")
    model_state = load_file(str(model_file), device=str(map_location))
    trainer_state = torch.load(state_file, map_location=map_location, weights_only=True)
    return model_state, trainer_state
