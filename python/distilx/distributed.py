"""torch.distributed set-up for runs launched by `torchrun` (or plain single-process runs).

torchrun exports RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; when they are present
the process group is initialised with NCCL on GPU and gloo on CPU. Without them the run is a
single process and nothing is initialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistEnv", "setup_distributed", "teardown_distributed", "all_reduce_mean", "run_on_main"]


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cpu":
        return torch.device("cpu")
    if requested.startswith("cuda") or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={requested!r} but CUDA is not available; use device='cpu'")
        if requested.startswith("cuda:"):
            return torch.device(requested)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _store_of_this_attempt(rank: int, world_size: int):
    """The process group's store for a restarted torchrun attempt, its keys apart from the earlier attempts'.

    torchrun's static rendezvous (--master-port, no --rdzv-backend) keeps one store across --max-restarts, and
    init_process_group's keys carry no attempt number: a restarted rank could read a dead worker's address
    left by the failed attempt and fail to connect ("Connection refused"), which uses up a restart. Attempt 0
    (and any run outside torchrun) keeps torch's own env:// store."""
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    if attempt == 0:
        return None
    store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world_size))
    return dist.PrefixStore(f"distilx/attempt_{attempt}", store)


def setup_distributed(device: str = "auto") -> DistEnv:
    """Read torchrun's environment, pick this process's device and join the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        store = _store_of_this_attempt(rank, world_size)
        if store is not None:
            kwargs["store"] = store
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Mean of `value` over ranks (a no-op in single-process runs)."""
    if env.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= env.world_size
    return value


def run_on_main(env: DistEnv, fn, share: bool = False):
    """fn() on rank 0 only; returns its result there, and elsewhere too when `share` (a picklable
    result), else None. When fn raises, every rank raises the same error, so no rank waits forever
    in a collective for one that gave up."""
    result, error = None, None
    if env.is_main:
        try:
            result = fn()
        except Exception as exc:  # handed to every rank below
            error = exc
    if env.distributed:
        shared = [error, result if share else None]
        dist.broadcast_object_list(shared, src=0)
        error = shared[0]
        if not env.is_main:
            result = shared[1]
    if error is not None:
        raise error
    return result
