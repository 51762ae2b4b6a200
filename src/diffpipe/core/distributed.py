"""Processes launched by torchrun: who am I, which share of the work is mine, and gathering the results.

A stage runs under `torchrun --standalone --nproc_per_node=N` (dvc.yaml templates N from params.yaml).
torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; with WORLD_SIZE 1 (or run with plain `python`) nothing is
initialised and every helper here is a no-op. Above 1, the process group uses NCCL on CUDA and gloo on the
CPU, and each process takes CUDA device LOCAL_RANK.

CPU threads: each worker's thread count is set by the launcher before torch loads (`core/launch.py`): shared
between the workers for training, a lone process's for sampling and feature extraction (same bytes).

Work is split by item index into contiguous shards (whole batches where a batch size is given), and
gathered back in index order on every rank, so the result is the one a single process would produce.
"""
from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


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


def _die_with_launcher() -> None:
    """Under torchrun, end this worker when its launcher dies (Linux PR_SET_PDEATHSIG): torchrun starts
    workers in their own session, so a `kill -9` of `dvc repro`'s process group would otherwise leave a
    worker training on, beside the re-run that resumes its state."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the launcher died before the call
        os._exit(1)


def init(device: torch.device) -> tuple[World, torch.device]:
    """Join the torchrun process group (if any) for `device`; returns the world and this process's device."""
    _die_with_launcher()
    world = world_from_env()
    if not world.distributed:
        return world, device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
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


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def close(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
