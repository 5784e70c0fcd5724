"""Describe this machine's training device as JSON (run as `python -m worker.trainer.device`).

A separate process, so the Celery parent never initialises CUDA before it forks.
"""

from __future__ import annotations

import json
import os


def describe() -> dict:
    """Kind, name, memory, bf16 support (and on the CPU the heap allocator) of the device a trainer here would use."""
    import torch

    from worker.planning.allocator import active_allocator
    from worker.trainer.device_choice import pick_device
    from worker.trainer.model import supports_bf16

    if pick_device() == "cuda":  # a worker started for CUDA without one stops here, saying why
        gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        name, memory_gb = gpu_summary([(p.name, p.total_memory / 2**30) for p in gpus])
        return {"kind": "cuda", "name": name, "memory_gb": memory_gb, "count": len(gpus),
                "bf16": supports_bf16("cuda")}
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return {"kind": "cpu", "name": f"{os.cpu_count()}-core CPU", "memory_gb": round(pages * page_size / 2**30, 1),
            "count": os.cpu_count(), "bf16": supports_bf16("cpu"), "allocator": active_allocator()}


def gpu_summary(gpus: list[tuple[str, float]]) -> tuple[str, float]:
    """(name, GiB) that hold for every GPU a worker lends out (any job may get any of them): the smallest memory,
    so a host with a 24 GB and an 80 GB card is a gpu24 worker, not a gpu80 one; the names, when they differ."""
    names = list(dict.fromkeys(name for name, _ in gpus))
    return " + ".join(names), round(min(gb for _, gb in gpus), 1)


if __name__ == "__main__":
    print(json.dumps(describe()))
