"""One GPU per job on a host with several: the worker's slots each own one device id, and a job's child sees only
its own (CUDA_VISIBLE_DEVICES). Without it every trainer landed on GPU 0, and with 2+ GPUs visible transformers'
Trainer wrapped a non-quantized model in nn.DataParallel, which the chunked loss cannot call through.

`lorastudio worker --device cuda` lists the host's GPUs in LORASTUDIO_GPU_SLOTS (one slot each, a thread each);
without that variable (a CPU worker, or `auto`) children see whatever the worker sees."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SLOTS_ENV = "LORASTUDIO_GPU_SLOTS"  # "0,1,2,3": the device ids this worker's jobs share out, one each


class GpuSlots:
    """A pool of device ids: take() lends one to a job for as long as its child runs (waiting while all are lent:
    a worker with more task threads than GPUs)."""

    def __init__(self, ids: list[str]) -> None:
        self.free = list(ids)
        self.size = len(ids)
        self._changed = threading.Condition()

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ = os.environ) -> GpuSlots | None:
        ids = [i.strip() for i in env.get(SLOTS_ENV, "").split(",") if i.strip()]
        return cls(ids) if ids else None

    @contextmanager
    def take(self) -> Iterator[str]:
        with self._changed:
            self._changed.wait_for(lambda: bool(self.free))
            gpu = self.free.pop(0)
        try:
            yield gpu
        finally:
            with self._changed:
                self.free.append(gpu)
                self._changed.notify()


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


@contextmanager
def one_gpu(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """env with CUDA_VISIBLE_DEVICES set to a GPU lent for the duration (unchanged without GPU slots)."""
    slots = worker_slots()
    if slots is None:
        yield env
        return
    with slots.take() as gpu:
        yield {**env, "CUDA_VISIBLE_DEVICES": gpu}


def host_gpu_ids(device_count: int, visible: str | None) -> list[str]:
    """The ids to share out: CUDA_VISIBLE_DEVICES's entries where it is set (the host's own restriction, kept),
    else 0..device_count-1."""
    if visible is not None and visible.strip():
        return [v.strip() for v in visible.split(",") if v.strip()][:device_count]
    return [str(i) for i in range(device_count)]
