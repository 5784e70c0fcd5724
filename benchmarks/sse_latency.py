"""Latency from the trainer logging a step to the point being drawn on the run page (issue 3; goal p95 ≤ 250 ms).

Starts a studio (SQLite, its own Redis, one worker, the web app) on free ports, trains the tiny model for a few
hundred logged steps, watches the run page in headless Chromium and, for every drawn point, takes
`now - logged_at` (the trainer stamps each metric event with its wall clock; same machine, same clock).
Also measured in the same page: the latency at which the browser's own EventSource received each point, as the
baseline the drawing adds to.

    .venv/bin/python benchmarks/sse_latency.py [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core import schema  # noqa: E402
from app.core.config import Settings  # noqa: E402
from app.core.resources import Resources  # noqa: E402
from app.stack import Stack, free_port, wait_for_http, web_argv, worker_argv  # noqa: E402
from tests.support.accounts import Account, create_account  # noqa: E402
from tests.support.studio import CHAT_ROWS, run_spec  # noqa: E402
from tests.support.tiny_model import build_tiny_model  # noqa: E402

OBSERVER_JS = """() => {
  window.__drawn = []; window.__received = [];
  const chart = document.querySelector('#loss-chart');
  new MutationObserver(() => {
    const at = Number(chart.dataset.lastLoggedAt || 0);
    if (at) window.__drawn.push([Number(chart.dataset.points), Date.now() / 1000 - at]);
  }).observe(chart, {attributes: true, attributeFilter: ['data-points']});
  const source = new EventSource(chart.dataset.eventsUrl);
  source.addEventListener('metric', (e) => {
    const p = JSON.parse(e.data);
    if (p.logged_at) window.__received.push(Date.now() / 1000 - p.logged_at);
  });
}"""


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def start_studio(tmp: Path) -> tuple[Stack, str, Account]:
    """A one-machine studio on free ports, and its admin account."""
    url = f"sqlite:///{tmp / 'studio.db'}"
    schema.upgrade(url)
    admin = create_account(Resources(Settings(data_dir=tmp, DATABASE_URL=url)), "admin", admin=True)
    stack = Stack()
    env = {**os.environ, "DATABASE_URL": url, "LORASTUDIO_DATA_DIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    env["REDIS_URL"] = stack.start_redis(tmp, env)
    stack.start("worker", worker_argv("training"), env, tmp / "worker.log")
    port = free_port()
    web = stack.start("web", web_argv("127.0.0.1", port), env, tmp / "web.log")
    base = f"http://127.0.0.1:{port}"
    wait_for_http(base, web)
    return stack, base, admin


def launch_run(base: str, admin: Account, model_dir: Path, steps: int) -> int:
    """Register the tiny model, upload a chat set, queue a LoRA run logging every step."""
    with httpx.Client(base_url=base, timeout=60, headers=admin.headers) as http:
        http.post("/api/models", json={"name": "tiny", "ref": str(model_dir)}).raise_for_status()
        body = "\n".join(json.dumps(r) for r in CHAT_ROWS).encode()
        dataset = http.post("/api/datasets", files={"file": ("chat.jsonl", body)}).json()
        spec = run_spec(dataset["id"], "tiny", "lora", steps)
        return http.post("/api/runs", json=spec).json()["id"]


def watch(base: str, admin: Account, run_id: int) -> tuple[list[float], list[float]]:
    """Drawn and received latencies (seconds) for the live points of one run, seen by a logged-in browser."""
    from playwright.sync_api import sync_playwright

    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=flags)
        page = browser.new_page()
        page.goto(f"{base}/login?next=/runs/{run_id}")
        page.fill("#f-username", admin.username)
        page.fill("#f-password", admin.password)
        page.click("#login-submit")
        page.wait_for_selector("#loss-chart")
        page.evaluate(OBSERVER_JS)
        page.wait_for_selector("#run-status[data-status=succeeded]", timeout=600_000)
        drawn, received = page.evaluate("() => [window.__drawn, window.__received]")
        browser.close()
    return [latency for _, latency in drawn], received


def main() -> None:
    """Run once and print p50/p95 against the goal."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorastudio-latency-") as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        stack, base, admin = start_studio(Path(tmp))
        try:
            drawn, received = watch(base, admin, launch_run(base, admin, model_dir, args.steps))
        finally:
            stack.stop()
    if not drawn:
        raise SystemExit("no live point was drawn: did the run page load before the run ended?")
    rows = [("received by EventSource (baseline)", received), ("drawn on the chart", drawn)]
    print(f"{'latency trainer→browser':38} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p95/goal':>9}")
    for name, values in rows:
        p50, p95 = statistics.median(values) * 1000, percentile(values, 95) * 1000
        print(f"{name:38} {len(values):5d} {p50:8.0f} {p95:8.0f} {p95 / 250:9.2f}")
    print(f"drawn/received p95 ratio: {percentile(drawn, 95) / max(percentile(received, 95), 1e-9):.2f}")


if __name__ == "__main__":
    main()
