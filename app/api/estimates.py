"""Sizing a run before launch: peak memory, time, fit verdict and fixes for a spec on a device."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.core import workers
from app.core.services import estimates as estimate_service
from app.deps import CurrentUser, ResourcesDep, SessionDep
from worker.planning.spec import RunSpec

router = APIRouter(prefix="/api", tags=["estimates"])


@router.post("/estimate")
def estimate_run(spec: RunSpec, session: SessionDep, res: ResourcesDep, user: CurrentUser,
                 device: str | None = None) -> dict[str, Any]:
    """The estimate for the spec on `device` (a worker hostname or a profile: cpu, gpu-24, gpu-40, gpu-80)."""
    profile = estimate_service.pick_device(device, workers.live_workers(res.redis))
    return estimate_service.estimate_run(session, spec, profile, user=user).to_dict()


@router.get("/estimate/devices")
def list_devices(res: ResourcesDep) -> list[dict[str, Any]]:
    """What an estimate can be made for: live workers' devices, else the built-in profiles."""
    options = estimate_service.devices(workers.live_workers(res.redis))
    return [{"key": key, "kind": p.kind, "name": p.name, "memory_gb": p.memory_gb} for key, p in options.items()]
