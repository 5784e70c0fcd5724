"""One GPU per job on a host with several: the worker's slots each own one device id, and a job's child sees only
its own (CUDA_VISIBLE_DEVICES). Without it every trainer landed on GPU 0, and with 2+ GPUs visible transformers'
Trainer wrapped a non-quantized model in nn.DataParallel, which the chunked loss cannot call through.

`lorastudio worker --device cuda` lists the host's GPUs in LORASTUDIO_GPU_SLOTS (one slot each, a thread each);
without that variable (a CPU worker, or `auto`) children see whatever the worker sees. A run on several GPUs
(`resources.gpus`, DDP) is lent that many at once, and its torchrun ranks take one each."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SLOTS_ENV = "LORASTUDIO_GPU_SLOTS"  # "0,1,2,3": the device ids this worker's jobs share out, one each


class NotEnoughGpus(Exception):
    """A job asks for more GPUs than this worker has."""


class GpuSlots:
    """A pool of device ids: take(n) lends n to a job for as long as its child runs (waiting while fewer are free:
    a worker with more task threads than GPUs, or a multi-GPU job behind single-GPU ones)."""

    def __init__(self, ids: list[str]) -> None:
        self.free = list(ids)
        self.size = len(ids)
        self._changed = threading.Condition()

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ = os.environ) -> GpuSlots | None:
        ids = [i.strip() for i in env.get(SLOTS_ENV, "").split(",") if i.strip()]
        return cls(ids) if ids else None

    @contextmanager
    def take(self, count: int = 1) -> Iterator[list[str]]:
        """Lend `count` device ids (at most the pool's size) until the block ends."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.free) >= count)
            gpus, self.free = self.free[:count], self.free[count:]
        try:
            yield gpus
        finally:
            with self._changed:
                self.free.extend(gpus)
                self._changed.notify_all()


_slots: GpuSlots | None = None
_read = False
_lock = threading.Lock()


def worker_slots() -> GpuSlots | None:
    """This worker process's GPU slots (from LORASTUDIO_GPU_SLOTS, read once), or None."""
    global _slots, _read
    with _lock:
        if not _read:
            _slots, _read = GpuSlots.from_env(), True
        return _slots


def check_count(count: int) -> None:
    """Refuse a job that asks for more GPUs than this worker can ever lend it (before it waits for them)."""
    slots = worker_slots()
    have = slots.size if slots is not None else 0
    if count > 1 and count > have:
        raise NotEnoughGpus(f"The run asks for {count} GPUs (resources.gpus) but this worker has "
                            f"{have or 'no GPU slots'}{' GPUs' if have else ''}: set resources.gpus to at most "
                            f"{max(have, 1)}, or run a worker on a host with {count} GPUs (`lorastudio worker "
                            "--device cuda`).")


@contextmanager
def lent_gpus(env: dict[str, str], count: int = 1) -> Iterator[dict[str, str]]:
    """env with CUDA_VISIBLE_DEVICES set to `count` GPUs lent for the duration (unchanged without GPU slots: a
    one-GPU job there sees what the worker sees). check_count() first."""
    slots = worker_slots()
    if slots is None:
        yield env
        return
    with slots.take(count) as gpus:
        yield {**env, "CUDA_VISIBLE_DEVICES": ",".join(gpus)}


def host_gpu_ids(device_count: int, visible: str | None) -> list[str]:
    """The ids to share out: CUDA_VISIBLE_DEVICES's entries where it is set (the host's own restriction, kept),
    else 0..device_count-1."""
    if visible is not None and visible.strip():
        return [v.strip() for v in visible.split(",") if v.strip()][:device_count]
    return [str(i) for i in range(device_count)]
