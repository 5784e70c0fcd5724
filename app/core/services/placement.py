"""Where a run trains: its device class from the person's choice (resources.device_class) and the estimate.

The class is stored on the run and picks its queue (worker.planning.device_classes), on requeue too; the web only
decides it, workers consume the queues of the classes they can run.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import StudioError
from app.core.services.estimates import model_shape
from worker.planning import device_classes
from worker.planning.device_profiles import DeviceProfile
from worker.planning.estimate import memory_breakdown
from worker.planning.spec import RunSpec

# The GPU a run is sized for before it is routed: bf16-capable (Ampere or newer), the size a class decides.
SIZING_GPU = DeviceProfile("sizing", "cuda", "GPU", 0.0, bf16=True)


def route_run(session: Session, spec: RunSpec, workers: list[dict[str, Any]] | None = None) -> str | None:
    """The device class spec's run is routed to (None: any training worker); a 422 naming resources.device_class
    when no class can take it."""
    choice = spec.resources.device_class
    if spec.resources.gpus > 1 and choice in ("auto", "any"):
        choice = "gpu"  # several GPUs at once: only a GPU worker can lend them
    shape, _why = model_shape(session, spec.model.base_model) if choice in ("auto", "gpu") else (None, None)
    peak = sum(memory_breakdown(spec, shape, SIZING_GPU).values()) if shape is not None else None
    try:
        return device_classes.route(choice, shape.total_params() if shape else None, peak)
    except device_classes.Unroutable as exc:
        raise StudioError("invalid", "no_device_class", f"resources.device_class {choice}: {exc}.",
                          field="resources.device_class") from None


def live_classes(workers: list[dict[str, Any]] | None) -> set[str]:
    """The device classes live training workers take (as announced in the registry)."""
    return {c for w in workers or [] if w.get("device_class")
            for c in device_classes.accepted_classes(str(w["device_class"]))}


def describe(device_class: str | None, workers: list[dict[str, Any]] | None) -> str:
    """Words for the queued timeline entry: where the run goes, and whether a live worker can take it now."""
    if device_class is None:
        return ""
    if workers and device_class not in live_classes(workers):
        return f", for a {device_class} worker (none is live now: it waits until one starts)"
    return f", for a {device_class} worker"
