"""Small figures the run pages draw server-side: min/max downsampling, loss sparklines, ETAs, spec diffs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.core.models import Run

SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 80.0, 24.0, 2.0


def downsample_minmax(values: Sequence[float], max_points: int) -> list[int]:
    """Indices to keep so at most max_points remain: first, last, each bucket's min and max (spikes survive)."""
    n = len(values)
    if n <= max_points:
        return list(range(n))
    buckets = max(1, (max_points - 2) // 2)
    size = (n - 2) / buckets
    keep = [0]
    for b in range(buckets):
        chunk = range(1 + int(b * size), min(n - 1, 1 + int((b + 1) * size)))
        if not chunk:
            continue
        lo = min(chunk, key=values.__getitem__)
        hi = max(chunk, key=values.__getitem__)
        keep.extend(i for i in sorted({lo, hi}) if i != keep[-1])
    keep.append(n - 1)
    return keep


@dataclass(frozen=True)
class Sparkline:
    """An SVG polyline of a run's train loss, scaled into a small fixed box."""

    points: str
    last_x: float
    last_y: float
    low: float
    high: float
    count: int
    width: float = SPARK_WIDTH
    height: float = SPARK_HEIGHT


def sparkline(losses: Sequence[float], max_points: int = 48) -> Sparkline | None:
    """The sparkline of a loss series, or None with fewer than two points."""
    if len(losses) < 2:
        return None
    kept = [losses[i] for i in downsample_minmax(losses, max_points)]
    low, high = min(kept), max(kept)
    span = (high - low) or 1.0
    step = (SPARK_WIDTH - 2 * SPARK_PAD) / (len(kept) - 1)
    coords = [(SPARK_PAD + i * step, SPARK_PAD + (high - v) / span * (SPARK_HEIGHT - 2 * SPARK_PAD))
              for i, v in enumerate(kept)]
    text = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    return Sparkline(text, round(coords[-1][0], 1), round(coords[-1][1], 1), low, high, len(losses))


def eta_seconds(run: Run, now: datetime | None = None) -> float | None:
    """Seconds left for a running run at its pace so far, or None when it cannot be told."""
    if run.status != "running" or not run.started_at or not run.total_steps or run.current_step <= 0:
        return None
    started = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=UTC)
    elapsed = ((now or datetime.now(UTC)) - started).total_seconds()
    return max(0.0, elapsed / run.current_step * (run.total_steps - run.current_step))


def duration(seconds: float | None) -> str:
    """Seconds in words a person reads at a glance: 45s, 3m 20s, 2h 05m."""
    if seconds is None:
        return "—"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def flatten(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested spec as dotted keys (lora.r, training.learning_rate), in the spec's own order."""
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@dataclass(frozen=True)
class DiffRow:
    """One dotted spec key with each run's value, and whether they differ."""

    key: str
    values: list[str]
    differs: bool


def spec_diff(specs: Sequence[dict[str, Any]]) -> list[DiffRow]:
    """Every key of the flattened specs, side by side; a key missing from a spec shows as a dash."""
    flats = [flatten(spec) for spec in specs]
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    missing = object()
    rows = []
    for key in keys:
        raw = [flat.get(key, missing) for flat in flats]
        shown = ["—" if v is missing else _display(v) for v in raw]
        rows.append(DiffRow(key, shown, len(set(shown)) > 1))
    return rows


def _display(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "[]"
    if value is None:
        return "none"
    return str(value)
