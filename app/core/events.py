"""Redis channel names and the payloads sent on them (metric points, status changes)."""

from __future__ import annotations

import json
from typing import Any

from app.core.models import MetricPoint, Run


def run_channel(run_id: int) -> str:
    """The pub/sub channel of one run's live events."""
    return f"lorastudio:run:{run_id}"


def metric_payload(point: MetricPoint) -> dict[str, Any]:
    """A metric point as sent to browsers; seq is its SSE id."""
    return {"type": "metric", "seq": point.seq, "step": point.step, **point.values}


def status_payload(run: Run) -> dict[str, Any]:
    """A run's state as sent to browsers."""
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
