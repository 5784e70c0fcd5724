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
        props = torch.cuda.get_device_properties(0)
        return {"kind": "cuda", "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                "count": torch.cuda.device_count(), "bf16": supports_bf16("cuda")}
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return {"kind": "cpu", "name": f"{os.cpu_count()}-core CPU", "memory_gb": round(pages * page_size / 2**30, 1),
            "count": os.cpu_count(), "bf16": supports_bf16("cpu"), "allocator": active_allocator()}


if __name__ == "__main__":
    print(json.dumps(describe()))
