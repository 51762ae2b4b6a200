"""Processes launched by torchrun: who am I, which share of the work is mine, and gathering the results.

A stage runs under `torchrun --standalone --nproc_per_node=N` (dvc.yaml templates N from params.yaml).
torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; with WORLD_SIZE 1 (or run with plain `python`) nothing is
initialised and every helper here is a no-op. Above 1, the process group uses NCCL on CUDA and gloo on the
CPU, and each process takes CUDA device LOCAL_RANK.

CPU threads: each worker's thread count is set by the launcher before torch loads (`core/launch.py`): shared
between the workers for training, a lone process's for sampling and feature extraction (same bytes).

Work is split by item index into contiguous shards (whole batches where a batch size is given), and
gathered back in index order on every rank, so the result is the one a single process would produce.

Stopping: the ranks agree on a stop with `agree_max` (a CPU all-reduce, so it never waits for a GPU), and a
collective that fails because a peer is gone is recognised by `peer_failure`. torchrun's agent, not this
module, stops the other workers when one dies; a CPU collective waits at most GLOO_TIMEOUT for a peer.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist


# The longest a rank waits in a CPU collective for the others, e.g. while rank 0 alone draws the epoch's preview
# grid and saves the state (seconds here), or for a peer that hangs; a peer that dies breaks its connections
# and the collective fails at once (torch's default, 30 minutes, would let a hung job sit for half an hour).
GLOO_TIMEOUT = timedelta(minutes=5)
_control = None  # the CPU group the ranks agree over (see agree_max)


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes outputs, logs and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World(0, 1, 0)


def world_from_env() -> World:
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def init(device: torch.device) -> tuple[World, torch.device]:
    """Join the torchrun process group (if any) for `device`; returns the world and this process's device.
    On the CPU (gloo) a collective waits at most GLOO_TIMEOUT for a peer."""
    world = world_from_env()
    if not world.distributed:
        return world, device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo", timeout=GLOO_TIMEOUT)
        atexit.register(close, world)  # leave the group when the stage's process ends
    return world, device


def shard(n: int, world: World, batch_size: int = 1) -> range:
    """This rank's contiguous part of range(n): whole batches of `batch_size`, split as evenly as they go, so
    every batch is the one a single process would run."""
    batches = -(-n // batch_size) if n else 0
    per, extra = divmod(batches, world.size)
    first = world.rank * per + min(world.rank, extra)
    last = first + per + (1 if world.rank < extra else 0)
    return range(min(n, first * batch_size), min(n, last * batch_size))


def gather_rows(part: np.ndarray, world: World) -> np.ndarray:
    """Concatenate every rank's rows in rank order (the shards of `shard`), on every rank."""
    if not world.distributed:
        return part
    parts: list = [None] * world.size
    dist.all_gather_object(parts, part)
    return np.concatenate(parts, axis=0)


def broadcast_object(obj, world: World):
    """Rank 0's `obj` on every rank (pickled; e.g. a resumable state that only rank 0's disk holds)."""
    if not world.distributed:
        return obj
    box = [obj if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _control_group():
    """A gloo group of all ranks for small agreements on the CPU: the default group on the CPU; beside NCCL a
    second group (made at the first call, which every rank makes at the same point), so agreeing never waits
    for the GPU."""
    global _control
    if _control is None:
        gloo = dist.get_backend() == "gloo"
        _control = dist.group.WORLD if gloo else dist.new_group(backend="gloo", timeout=GLOO_TIMEOUT)
    return _control


def agree_max(value: int, world: World) -> int:
    """The largest of every rank's `value`, on every rank (a CPU all-reduce: about 0.5 ms on this 2-core machine)."""
    if not world.distributed:
        return value
    box = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(box, op=dist.ReduceOp.MAX, group=_control_group())
    return int(box.item())


def peer_failure(e: BaseException) -> str:
    """What `e` says if it is a collective failing because another rank is gone (its connection broke: killed,
    crashed; or the wait passed GLOO_TIMEOUT), else "": gloo raises a plain RuntimeError naming its source."""
    text = str(e).strip()
    if not (isinstance(e, dist.DistError) or (isinstance(e, RuntimeError) and "gloo" in text)):
        return ""
    text = text.split("] ", 1)[-1] if text.startswith("[") else text  # drop gloo's source location
    return text.split(". ", 1)[0].splitlines()[0] if text else type(e).__name__


def barrier(world: World) -> None:
    """Wait until every rank is here (on the CPU group)."""
    if world.distributed:
        dist.barrier(group=_control_group())


def close(world: World) -> None:
    global _control
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
    _control = None
