"""Small figures the run pages draw server-side: min/max downsampling, loss sparklines, run clocks and ETAs, spec
diffs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.core.models import MetricPoint, Run

SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 80.0, 24.0, 2.0
# Train logs the ETA's step rate is measured over: the recent pace, not one noisy interval nor the whole run.
RATE_WINDOW = 10


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


def step_rate(points: Sequence[MetricPoint]) -> float | None:
    """Steps per second over the newest attempt's last RATE_WINDOW train logs (seq order), or None with fewer than
    two; it is measured on the trainer's own clock (elapsed_s), so model loading and queueing do not count."""
    recent: list[tuple[int, float]] = []
    for point in points:
        at = point.values.get("elapsed_s")
        if "eval_loss" in point.values or not isinstance(at, int | float):
            continue
        if recent and at < recent[-1][1]:
            recent = []  # a resumed attempt: its trainer's clock starts again
        recent.append((point.step, float(at)))
    window = recent[-RATE_WINDOW:]
    if len(window) < 2 or window[-1][1] <= window[0][1] or window[-1][0] <= window[0][0]:
        return None
    return (window[-1][0] - window[0][0]) / (window[-1][1] - window[0][1])


def elapsed_seconds(run: Run, now: datetime | None = None) -> float | None:
    """Seconds since the run's (latest attempt's) start: until now while it runs, until its end once ended."""
    end = run.finished_at if run.run_status.finished else None
    if run.started_at is None or (end is None and run.status != "running"):
        return None
    return max(0.0, (_aware(end or now or datetime.now(UTC)) - _aware(run.started_at)).total_seconds())


def eta_seconds(run: Run, points: Sequence[MetricPoint] = (), now: datetime | None = None) -> float | None:
    """Seconds left for a running run: its remaining steps at the recent step rate of `points` (at its pace since
    it started while fewer than two steps are logged), or None when it cannot be told."""
    if run.status != "running" or not run.total_steps or run.current_step <= 0:
        return None
    rate = step_rate(points)
    if rate is None:
        elapsed = elapsed_seconds(run, now)
        if not elapsed:
            return None
        rate = run.current_step / elapsed
    return max(0.0, (run.total_steps - run.current_step) / rate)


@dataclass(frozen=True)
class RunClock:
    """A run's time as its page shows it: elapsed (its duration once ended) and, while it runs, the ETA."""

    running: bool
    elapsed_s: float | None
    eta_s: float | None

    @property
    def elapsed(self) -> str:
        """The elapsed time in words."""
        return duration(self.elapsed_s)

    @property
    def eta(self) -> str:
        """The time left in words (a dash when it cannot be told yet)."""
        return duration(self.eta_s)


def run_clock(run: Run, points: Sequence[MetricPoint] = (), now: datetime | None = None) -> RunClock:
    """The run's clock at `now` (the recent points give the ETA its step rate)."""
    now = now or datetime.now(UTC)
    return RunClock(run.status == "running", elapsed_seconds(run, now), eta_seconds(run, points, now))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC


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
