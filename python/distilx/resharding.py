"""Resuming a run's data on another number of processes (a node lost, 8 GPUs -> 4, or more added).

Every training stream shards an epoch across the W processes of a run; seen from all of them together,
an epoch is one sequence of global batches, batch g = k * W + r being rank r's k-th batch of the epoch.
The ranks advance in lock-step (each optimizer step takes `grad_accum` batches from every rank), so a
checkpoint written at the end of a step holds every rank's position at one (epoch, batches done d).

Resumed by W' != W processes, the rest of that epoch is the W-process run's global sequence from
g0 = d * W on, dealt round-robin: rank r' takes batches g0 + r' + t * W' (t = 0, 1, ...). Each batch is
made by a *virtual* stream of the old shard that owns it (`for_shard(g % W, W)`, positioned at the
checkpoint's place): the very batches — documents, order, masks — the W-process run would have used,
each once, none skipped. When they do not divide evenly the first ranks take one batch more (ranks need
not agree on batch counts, only on steps). Then epoch e + 1 starts with the W'-process sharding.
A later change of world size in that remainder continues the same way (the state says where the
remainder stands); positions that are not in lock-step (an earlier remainder's uneven tail) continue at
the next epoch boundary, with a warning naming what is skipped.

The stream protocol (MaskedLMStream, ClassificationBatches and every batch source a task builds):
iterating yields the rest of the current epoch, then the epoch counter advances; `state_dict()` /
`load_state_dict(state)`; `set_epoch(e)`; `position_of(state) -> (epoch, batches done in it)`;
`for_shard(rank, world_size)`: the same data as another rank of another world size, at epoch 0;
`last_origin`: what the last batch handed out was made of (row starts, example indices), the stream's
own record of what was used; `batches_per_epoch`; `files`.
"""

from __future__ import annotations

import math
import warnings

__all__ = ["resume_stream", "Redistributed", "batches_left"]

_KEY = "redistributed"


class Redistributed:
    """Rank `rank` of `world`'s share of the rest of an epoch written by len(`shards`) processes, then
    `stream` (this rank's own stream) from the next epoch on. Presents the stream protocol."""

    def __init__(self, stream, shards: list[dict], epoch: int, start: int, world: int, rank: int, taken: int = 0):
        self.stream, self.shards = stream, shards
        self._epoch, self.start, self.world, self.rank, self.taken = epoch, start, world, rank, taken
        self._done_before = stream.position_of(shards[0])[1]  # every shard's batches done at the checkpoint
        self._virtual: dict[int, list] = {}  # old rank -> [stream, iterator, index of its next batch]
        self._origin = None
        self.done = False
        stream.set_epoch(epoch + 1)

    # -- the protocol, delegated once the remainder is over --
    @property
    def epoch(self) -> int:
        return self.stream.epoch if self.done else self._epoch

    @property
    def batches_per_epoch(self):
        return self.stream.batches_per_epoch

    @property
    def files(self):
        return self.stream.files

    @property
    def last_origin(self):
        return self.stream.last_origin if self.done else self._origin

    def position_of(self, state: dict):
        return self.stream.position_of(state)

    def count_batches(self) -> int:
        return self.stream.count_batches()

    def for_shard(self, rank: int, world_size: int):
        return self.stream.for_shard(rank, world_size)

    def set_epoch(self, epoch: int) -> None:
        self.done = True
        self._virtual.clear()
        self.stream.set_epoch(epoch)

    def load_state_dict(self, state: dict) -> None:
        raise TypeError("a Redistributed stream is built by resume_stream(), not loaded")

    def state_dict(self) -> dict:
        if self.done:
            return self.stream.state_dict()
        return {_KEY: {"epoch": self._epoch, "shards": self.shards, "start": self.start, "world": self.world,
                       "rank": self.rank, "taken": self.taken}}

    # -- the remainder --
    def _shard(self, r: int) -> list:
        """[virtual stream of old rank r at the checkpoint's place, its iterator, index of its next batch]."""
        entry = self._virtual.get(r)
        if entry is None:
            shard = self.stream.for_shard(r, len(self.shards))
            shard.load_state_dict(self.shards[r])
            entry = self._virtual[r] = [shard, iter(shard), self._done_before]
        return entry

    def _batch(self, g: int):
        """Global batch g of the old run, or None past the end of its epoch."""
        k, r = divmod(g, len(self.shards))
        entry = self._shard(r)
        shard, batches = entry[0], entry[1]
        while entry[2] <= k:
            batch = next(batches, None)
            if batch is None:
                return None
            entry[2] += 1
            if entry[2] > k:
                self._origin = shard.last_origin
                return batch
        return None

    def remaining(self) -> int:
        """Batches of the remainder this rank has still to take."""
        if self.done:
            return 0
        shard = self._shard((self.start + self.rank + self.taken * self.world) % len(self.shards))[0]
        length = shard.batches_per_epoch
        if length is None:  # one old process over raw text: one counting pass
            length = shard.count_batches()
        total = length * len(self.shards) - self.start  # global batches left in the old run's epoch
        return max(0, math.ceil((total - self.rank) / self.world) - self.taken)

    def __iter__(self):
        if self.done:
            yield from self.stream
            return
        while True:
            batch = self._batch(self.start + self.rank + self.taken * self.world)
            if batch is None:
                break
            self.taken += 1  # before the yield: a state taken while this batch is in use is past it
            yield batch
        self.done = True
        self._virtual.clear()


def _lock_step(stream, states: list[dict]):
    """(epoch, shards, start) when every state stands at one place of one epoch, else None."""
    phases = [s.get(_KEY) for s in states]
    if all(p is None for p in phases):
        places = {tuple(stream.position_of(s)) for s in states}
        if len(places) == 1:
            (epoch, done), = places
            return epoch, states, done * len(states)
        return None
    if all(p is not None for p in phases):
        places = {(p["epoch"], p["start"], p["world"], p["taken"]) for p in phases}
        if len(places) == 1:
            p = phases[0]
            return p["epoch"], p["shards"], p["start"] + p["taken"] * p["world"]
    return None


def _next_boundary(stream, states: list[dict]) -> int:
    """The first epoch no state has taken a batch of."""
    epochs = []
    for s in states:
        phase = s.get(_KEY)
        epoch, done = (phase["epoch"], 1) if phase else stream.position_of(s)
        epochs.append(epoch if done == 0 else epoch + 1)
    return max(epochs)


def _processes(n: int) -> str:
    return f"{n} process{'' if n == 1 else 'es'}"


def resume_stream(stream, states: list[dict], rank: int, world: int):
    """Position `stream` (rank `rank` of `world`) at a checkpoint's per-rank `states`; returns (the stream
    to iterate, a line saying how a changed world size continues, or None)."""
    if len(states) == world:  # each rank continues its own position
        phase = states[rank].get(_KEY)
        if phase is None:
            stream.load_state_dict(states[rank])
            return stream, None
        return Redistributed(stream, phase["shards"], phase["epoch"], phase["start"], world, rank,
                             phase["taken"]), None
    old, new = _processes(len(states)), _processes(world)
    place = _lock_step(stream, states)
    if place is None:
        epoch = _next_boundary(stream, states)
        stream.set_epoch(epoch)
        note = (f"the checkpoint's {old} stand at different places of their epoch, which cannot be dealt exactly to "
                f"{new}: continuing at the start of epoch {epoch}; what they had not yet taken of the epoch before "
                "is skipped")
        warnings.warn(note, stacklevel=2)
        return stream, note
    epoch, shards, start = place
    if start == 0:
        stream.set_epoch(epoch)
        return stream, f"the checkpoint was written by {old}, this run has {new}: epoch {epoch} is sharded over {new}"
    return Redistributed(stream, shards, epoch, start, world, rank), (
        f"the checkpoint was written by {old}, this run has {new}: the rest of epoch {epoch} (its batches from "
        f"{start} on, as {_processes(len(shards))} cut it) is dealt to the {new}, each batch once, none skipped; "
        f"epoch {epoch + 1} is sharded over {new}")


def batches_left(stream, epochs: int) -> int:
    """Batches `stream` (as positioned) yields until the end of epoch `epochs` - 1: what an epoch-counted
    run still trains on (its own share of a redistributed remainder included)."""
    per_epoch = stream.batches_per_epoch
    if per_epoch is None:
        per_epoch = stream.count_batches()
    if isinstance(stream, Redistributed) and not stream.done:
        return stream.remaining() + max(0, epochs - 1 - stream.epoch) * per_epoch
    epoch, done = stream.position_of(stream.state_dict())
    return max(0, (epochs - epoch) * per_epoch - done)
