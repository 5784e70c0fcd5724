"""The trainer's view of a run on several processes (`resources.gpus` > 1: DDP, one process per GPU, started by
torchrun through worker.trainer.launch): which rank this is, its device, and the few collectives the studio's own
code needs beside the Trainer's (a stop that every rank takes at the same step, every rank's RNG in a checkpoint).

One process (no WORLD_SIZE, or 1) is rank 0 of 1 and every helper here is a no-op.
"""

from __future__ import annotations

import os
from typing import Any


def world_size() -> int:
    """How many processes train this run (torchrun's WORLD_SIZE; 1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 when alone)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its host: the index of its GPU among those the job was lent."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Whether this process reports, writes checkpoints and saves the adapter (rank 0; the others only train)."""
    return rank() == 0


def rank_device(device: str) -> str:
    """Where this rank's model lives: its own GPU under DDP (cuda:LOCAL_RANK), else the device as named."""
    return f"cuda:{local_rank()}" if device == "cuda" and world_size() > 1 else device


def ddp_backend(device: str) -> str | None:
    """The process-group backend: NCCL between GPUs, gloo between CPU processes; None when alone."""
    if world_size() == 1:
        return None
    return "nccl" if device == "cuda" else "gloo"


def _active() -> bool:
    import torch.distributed as dist

    return world_size() > 1 and dist.is_available() and dist.is_initialized()


def any_rank(flag: bool) -> bool:
    """True on every rank once it is true on any (all ranks must call it at the same point)."""
    if not _active():
        return flag
    import torch
    import torch.distributed as dist

    device = f"cuda:{local_rank()}" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's obj, in rank order, on rank 0 (None on the others; [obj] when alone)."""
    if not _active():
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def barrier() -> None:
    """Wait until every rank is here (a no-op when alone)."""
    if _active():
        import torch.distributed as dist

        dist.barrier()
