"""Device classes: where a run may train, named once and used by the studio's router and the workers alike.

A worker belongs to one class — `cpu`, or `gpuN` for a GPU of at least N GB (the largest rung of GPU_RUNGS_GB its
memory reaches) — and consumes the training queue of every class it can run: a CPU worker `training.cpu`, an 80 GB
GPU worker `training.gpu8` … `training.gpu80`. A run routed to a class goes to that class's queue, so a 24 GB card
never takes a run sized for 80 GB and a CPU worker never takes a 7B QLoRA run. A run without a class goes to the
plain training queue, which every training worker consumes; it is pinned to its first worker's class when it starts,
so a requeue (a lost worker, an outage) sends it where its checkpoint and its resolved choices still fit.

Torch-free: the web routes runs with it; workers name themselves with it.
"""

from __future__ import annotations

import re

# Common GPU memory sizes in GB (as sold: 16 for a T4, 24 for an L4/A10/RTX 4090, 80 for an A100/H100, 141 for an
# H200, 180 for a B200). Rungs, not exact sizes: a run needing 30 GB goes to gpu32 and up.
GPU_RUNGS_GB = (8, 12, 16, 24, 32, 40, 48, 80, 94, 141, 180)
# A card reports a little less than its label (a T4's "16 GB" is 15.6 GB; an H200's 141 GB is 150 GB in bytes, so
# the label is the stricter): it belongs to a rung it reaches within this share.
LABEL_SLACK = 0.95
# Memory a GPU run keeps free beyond the estimate's peak (fragmentation, the estimate's own error).
HEADROOM = 1.15
# With device_class "auto", bases above this many parameters are routed to a GPU: on a CPU they take days.
AUTO_GPU_PARAMS = 1_500_000_000
CPU = "cpu"
# The class a worker process runs as (set by `lorastudio worker` / `up` before Celery starts; announced, and given
# to the runs it pins).
CLASS_ENV = "LORASTUDIO_DEVICE_CLASS"
CHOICES = ("auto", "any", "cpu", "gpu")  # and gpuN for a rung N
CHOICE_PATTERN = r"^(auto|any|cpu|gpu|gpu[0-9]{1,3})$"
_GPU_CLASS = re.compile(r"^gpu([0-9]{1,3})$")


class Unroutable(ValueError):
    """A run no device class can take (larger than the largest GPU rung)."""


def gpu_rung(name: str) -> int | None:
    """N of a class name gpuN on the ladder; None for anything else."""
    match = _GPU_CLASS.match(name)
    return int(match.group(1)) if match and int(match.group(1)) in GPU_RUNGS_GB else None


def check_choice(choice: str) -> str:
    """A person's device_class choice, or ValueError naming the rungs."""
    if choice in CHOICES or gpu_rung(choice) is not None:
        return choice
    rungs = ", ".join(f"gpu{r}" for r in GPU_RUNGS_GB)
    raise ValueError(f"device class {choice!r} is not one of auto, any, cpu, gpu or a GPU size: {rungs}")


def worker_class(kind: str, memory_gb: float) -> str:
    """The class of a worker: `cpu`, or the largest GPU rung its memory (GB, 10**9 bytes) reaches."""
    if kind != "cuda":
        return CPU
    reached = [rung for rung in GPU_RUNGS_GB if memory_gb >= rung * LABEL_SLACK]
    return f"gpu{reached[-1] if reached else GPU_RUNGS_GB[0]}"


def class_of(described: dict) -> str:
    """The class of a device as worker.trainer.device describes it ({kind, memory_gb in GiB, …})."""
    return worker_class(str(described.get("kind")), float(described.get("memory_gb") or 0) * 2**30 / 1e9)


def check_worker_class(name: str) -> str:
    """A class a worker may be told to run as (cpu or a GPU rung), or ValueError naming them."""
    if name == CPU or gpu_rung(name) is not None:
        return name
    raise ValueError(f"a worker's device class is cpu or one of {', '.join(f'gpu{r}' for r in GPU_RUNGS_GB)}, "
                     f"not {name!r}")


def accepted_classes(own: str) -> list[str]:
    """The classes a worker of class `own` trains: its own and every smaller GPU rung (a CPU worker: cpu only)."""
    rung = gpu_rung(own)
    if rung is None:
        return [own]
    return [f"gpu{r}" for r in GPU_RUNGS_GB if r <= rung]


def class_for_memory(peak_gb: float) -> str:
    """The smallest GPU class with room for a run whose estimated peak is peak_gb (with HEADROOM)."""
    need = peak_gb * HEADROOM
    for rung in GPU_RUNGS_GB:
        if rung >= need:
            return f"gpu{rung}"
    raise Unroutable(f"the estimate needs ~{need:.0f} GB of GPU memory (with {HEADROOM - 1:.0%} headroom), more than "
                     f"the largest GPU class (gpu{GPU_RUNGS_GB[-1]}); use QLoRA, a smaller batch or max length, or "
                     "gradient checkpointing")


def route(choice: str, total_params: int | None, gpu_peak_gb: float | None) -> str | None:
    """The class a run is routed to from the person's choice and the estimate (None: any training worker).

    total_params and gpu_peak_gb come from the estimate (None where the base's shape is unknown)."""
    if choice == "any":
        return None
    if choice == CPU or gpu_rung(choice) is not None:
        return choice
    needs_gpu = choice == "gpu" or (total_params is not None and total_params > AUTO_GPU_PARAMS)
    if not needs_gpu:
        return None
    if gpu_peak_gb is None:
        if choice == "gpu":
            raise Unroutable("the studio cannot size this base model for a GPU (its config is not known here): "
                             "choose a GPU class such as gpu24 or gpu80")
        return None
    return class_for_memory(gpu_peak_gb)


def queue_name(training_queue: str, device_class: str | None) -> str:
    """The Celery queue of runs of a class: the plain training queue for none, else training.<class>."""
    return training_queue if device_class is None else f"{training_queue}.{device_class}"


def worker_queues(training_queue: str, own: str) -> list[str]:
    """Every training queue a worker of class `own` consumes: the plain one first, then its classes'."""
    return [training_queue] + [queue_name(training_queue, c) for c in accepted_classes(own)]
