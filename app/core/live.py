"""Live updates: what Redis pub/sub carries to browsers (metric points, status changes), and its channel names.

Relayed as the SSE events of /api/runs/{id}/events; not to be confused with the trainer's reports
(worker.planning.reports) or a run's timeline (models.TimelineEntry)."""

from __future__ import annotations

import json
from typing import Any

from app.core.models import MetricPoint, Run


def run_channel(run_id: int) -> str:
    """The pub/sub channel of one run's live events."""
    return f"lorastudio:run:{run_id}"


def metric_update(point: MetricPoint) -> dict[str, Any]:
    """A metric point as a live update; seq is its SSE id."""
    return {"type": "metric", "seq": point.seq, "step": point.step, **point.values}


def status_update(run: Run) -> dict[str, Any]:
    """A run's state as a live update."""
    return {
        "type": "status",
        "status": run.status,
        "current_step": run.current_step,
        "total_steps": run.total_steps,
        "error_code": run.error_code,
        "error_message": run.error_message,
    }


def encode(payload: dict[str, Any]) -> str:
    """JSON text for Redis and SSE."""
    return json.dumps(payload, default=str)
