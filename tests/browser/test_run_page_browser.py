"""The run page and the frame around it in a real browser: a lone logged point is drawn, tokens/s is the rate of
each interval with the average beside it, the clock ticks and its ETA follows new steps; the runs table fits a
1440 px screen, password fields look like the others, the favicon is served, and a dataset's multi-line messages
keep to their own column beside the role label.

The runs are stored directly in the live studio's database and their points recorded through the services, as the
job runner records a trainer's reports: these tests are about what the pages show, not about training.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from app.core import live
from app.core.db import session_scope, utcnow
from app.core.models import Run, RunStatus
from app.core.resources import Resources
from app.core.services import runs as run_service
from tests.browser.conftest import log_in, screenshot
from tests.support.accounts import Account
from tests.support.studio import CHAT_ROWS, LiveStudio
from worker.planning.reports import Metric

pytestmark = pytest.mark.e2e

LONG = "llama-3.2-1b-instruct-customer-support-qlora-r16-alpha32-lr2e-4-3-epochs-packed-2048-tokens"
# How many pixels of a CSS colour the chart's canvas holds: the series' own colour appears only where it is drawn.
PIXELS_OF_JS = """([id, variable]) => {
  const canvas = document.querySelector(`#${id} canvas`);
  if (!canvas) return 0;
  const hex = getComputedStyle(document.documentElement).getPropertyValue(variable).trim();
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 200 && Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) < 40) n++;
  }
  return n;
}"""
FITS_JS = """() => [document.documentElement, document.querySelector('.table-wrap')]
  .map((el) => [el.scrollWidth, el.clientWidth])"""


class Runs:
    """Runs stored straight into the live studio's database, and their metric points recorded and published."""

    def __init__(self, resources: Resources, owner: Account, dataset_id: int, model_id: int) -> None:
        self.res, self.owner, self.dataset_id, self.model_id = resources, owner, dataset_id, model_id
        self.running: list[int] = []

    def add(self, name: str, status: RunStatus, **fields) -> int:  # noqa: ANN003
        with session_scope(self.res.session_factory) as session:
            run = Run(name=name, status=status, method="lora", spec={}, dataset_id=self.dataset_id,
                      base_model_id=self.model_id, owner_id=self.owner.id, **fields)
            session.add(run)
            session.flush()
            run_id = run.id
        if status == RunStatus.running:
            self.running.append(run_id)
        return run_id

    def record(self, run_id: int, points: list[Metric]) -> None:
        """As the job runner does: store (committed), then publish each point to the run's live viewers."""
        with session_scope(self.res.session_factory) as session:
            updates = [live.metric_update(row) for row in run_service.record_metrics(session, run_id, points)]
            # No worker beats for these runs: keep the janitor from taking them for lost while a page watches.
            session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow() + timedelta(hours=1)))
        for payload in updates:
            self.res.redis.publish(live.run_channel(run_id), live.encode(payload))

    def end_running(self) -> None:
        """Cancel the runs left running (ended ones are left as they are)."""
        with session_scope(self.res.session_factory) as session:
            for run_id in self.running:
                run_service.finish_run(session, run_id, RunStatus.cancelled, final={"steps": 0})


def train_point(step: int, elapsed: float, rate: float, average: float) -> Metric:
    """A train log as MetricsCallback reports it."""
    return Metric(step=step, loss=2.0 / step, learning_rate=1e-4, grad_norm=0.5, tokens_seen=460 * step,
                  elapsed_s=elapsed, tokens_per_second=rate, tokens_per_second_avg=average, memory_mb=900.0)


@pytest.fixture(scope="module")
def runs(resources: Resources, admin: Account, live_studio: LiveStudio, tiny_model_dir: Path) -> Iterator[Runs]:
    """Runs of a long-named model on a long-named dataset: the runs table meets names as people write them."""
    http, name = live_studio.http, f"{LONG}-{time.time_ns()}"
    model = http.post("/api/models", json={"name": name, "ref": str(tiny_model_dir)})
    assert model.status_code == 201, model.text
    body = "\n".join(json.dumps(row) for row in CHAT_ROWS).encode()
    dataset = http.post("/api/datasets", files={"file": ("chat.jsonl", body)}, data={"name": f"{name}-data"})
    assert dataset.status_code == 201, dataset.text
    seeded = Runs(resources, admin, dataset.json()["id"], model.json()["id"])
    yield seeded
    seeded.end_running()


@pytest.fixture(scope="module")
def context(browser, live_studio: LiveStudio) -> Iterator:  # noqa: ANN001
    """One signed-in browser context for the module (a page per test)."""
    context = browser.new_context(base_url=live_studio.url, viewport={"width": 1280, "height": 900})
    log_in(context.new_page(), live_studio.username, live_studio.password)
    yield context
    context.close()


@pytest.fixture
def tab(context) -> Iterator:  # noqa: ANN001
    """A new page of the module's signed-in context."""
    page = context.new_page()
    yield page
    page.close()


def test_a_single_logged_point_is_drawn(tab, runs: Runs) -> None:  # noqa: ANN001
    # Cancelled after its first log: one point on every chart, and no line to draw through it.
    start = utcnow() - timedelta(minutes=2)
    run_id = runs.add("cancelled-early", RunStatus.running, started_at=start, total_steps=50)
    runs.record(run_id, [train_point(1, 4.0, 45.0, 45.0)])
    with session_scope(runs.res.session_factory) as session:
        run_service.finish_run(session, run_id, RunStatus.cancelled, final={"steps": 1})
    tab.goto(f"/runs/{run_id}")
    for chart, colour in (("lr-chart", "--chart-lr"), ("grad-norm-chart", "--chart-grad"),
                          ("loss-chart", "--chart-loss")):
        tab.wait_for_selector(f"#{chart}[data-points='1'] canvas")
        tab.wait_for_function(f"(arg) => ({PIXELS_OF_JS})(arg) >= 8", arg=[chart, colour], timeout=5000)
    assert tab.locator("#lr-chart .chart-empty").count() == 0
    # Ended: the clock shows how long it ran, and no ETA.
    assert re.fullmatch(r"2m 0\ds", tab.inner_text("#run-elapsed")) and tab.locator("#run-eta").count() == 0
    screenshot(tab, "run-single-point")


def test_tokens_per_second_is_the_interval_rate_with_the_average_beside_it(tab, runs: Runs) -> None:  # noqa: ANN001
    run_id = runs.add("throughput", RunStatus.running, started_at=utcnow() - timedelta(seconds=30), total_steps=100)
    # A slow first interval (warm-up), then 230 tokens/s: the average since the start lags behind.
    runs.record(run_id, [train_point(1, 10.0, 46.0, 46.0), train_point(2, 12.0, 230.0, 76.7),
                         train_point(3, 14.0, 230.0, 98.6)])
    tab.goto(f"/runs/{run_id}")
    tab.wait_for_selector("#throughput-chart[data-points='3'] canvas")
    figure = tab.inner_text("#throughput-chart-figure")
    assert figure == "last interval 230 tokens/s · average 98.6 tokens/s"
    over = tab.locator("#throughput-chart .u-over")
    box = over.bounding_box()
    over.hover(position={"x": box["width"] - 1, "y": box["height"] / 2})  # the cursor on the last step
    legend = dict(tab.eval_on_selector_all("#throughput-chart .u-legend .u-series", """rows => rows.map(
        (row) => [row.querySelector('.u-label').textContent, row.querySelector('.u-value').textContent])"""))
    assert legend["tokens/s · raw"] == "230" and legend["average tokens/s"] == "98.6", legend
    screenshot(tab, "run-throughput")


def test_the_clock_ticks_and_its_eta_follows_new_steps(tab, runs: Runs) -> None:  # noqa: ANN001
    run_id = runs.add("clock", RunStatus.running, started_at=utcnow() - timedelta(seconds=125), total_steps=100)
    runs.record(run_id, [train_point(s, 20.0 + s, 230.0, 200.0) for s in range(1, 11)])  # 1 step/s: 90 s left
    tab.goto(f"/runs/{run_id}")
    eta = tab.inner_text("#run-eta")
    assert re.fullmatch(r"1m [23]\ds", eta), eta
    elapsed = tab.inner_text("#run-elapsed")
    assert re.fullmatch(r"2m \d\ds", elapsed), elapsed
    tab.wait_for_function("(before) => document.querySelector('#run-elapsed').textContent !== before", arg=elapsed,
                          timeout=3000)  # ticks by itself, no new point needed
    # Faster now, 4 steps/s: the server measures the ETA again as the points arrive over the live stream.
    runs.record(run_id, [train_point(s, 30.0 + (s - 10) / 4, 230.0, 210.0) for s in range(11, 21)])
    tab.wait_for_function("() => /^\\d+s$/.test(document.querySelector('#run-eta').textContent)", timeout=10_000)
    assert int(tab.inner_text("#run-eta").rstrip("s")) <= 20  # 80 steps at 4 a second
    screenshot(tab, "run-clock")


def test_the_runs_table_fits_a_1440_px_screen(tab, runs: Runs) -> None:  # noqa: ANN001
    for status in (RunStatus.succeeded, RunStatus.running, RunStatus.failed):
        start = utcnow() - timedelta(minutes=10)
        run_id = runs.add(f"{LONG}-{status.value}", status, started_at=start, total_steps=1000, current_step=400,
                          last_loss=1.2345, finished_at=None if status == RunStatus.running else utcnow())
        runs.record(run_id, [train_point(s, float(s), 230.0, 200.0) for s in range(1, 6)])
    tab.set_viewport_size({"width": 1440, "height": 900})
    tab.goto("/")
    tab.wait_for_selector("table.runs")
    screenshot(tab, "runs-1440")
    for scroll_width, client_width in tab.evaluate(FITS_JS):
        assert scroll_width <= client_width, f"the runs table is wider than the page: {scroll_width} > {client_width}"


def test_password_fields_look_like_text_fields_and_the_favicon_is_served(tab, browser, live_studio) -> None:  # noqa: ANN001
    looks = "(sel) => { const s = getComputedStyle(document.querySelector(sel)); " \
            "return [s.borderTopWidth, s.borderTopStyle, s.borderRadius, s.paddingLeft, s.backgroundColor, s.width]; }"
    anonymous = browser.new_context(base_url=live_studio.url)
    try:
        login = anonymous.new_page()
        login.goto("/login")
        assert login.evaluate(looks, "#f-password") == login.evaluate(looks, "#f-username")
        icon = login.get_attribute("link[rel=icon]", "href")
        assert login.request.get(icon).status == 200  # the login page's icon needs no session
    finally:
        anonymous.close()
    tab.goto("/account")
    for field in ("#f-current-password", "#f-new-password"):
        assert tab.evaluate(looks, field)[:5] == tab.evaluate(looks, "#f-token-name")[:5], field
    favicon = tab.request.get("/favicon.ico")
    assert favicon.status == 200 and favicon.headers["content-type"].startswith("image/svg+xml")
    assert favicon.body().startswith(b"<svg")


def test_a_multi_line_message_keeps_beside_its_role_label(tab, live_studio: LiveStudio) -> None:  # noqa: ANN001
    answer = "First line of the answer.\nSecond line, indented:\n    - a point\n    - another point"
    row = {"messages": [{"role": "user", "content": "Two lines?\nYes, two."}, {"role": "assistant", "content": answer}]}
    body = (json.dumps(row) + "\n").encode()
    dataset = live_studio.http.post("/api/datasets", files={"file": ("lines.jsonl", body)}, data={"name": "lines"})
    assert dataset.status_code == 201, dataset.text
    tab.goto(f"/datasets/{dataset.json()['id']}")
    turn = tab.locator("#dataset-preview .turn").nth(1)
    role, text = turn.locator(".role").bounding_box(), turn.locator(".turn-text").bounding_box()
    assert text["x"] >= role["x"] + role["width"], "the message starts under its role label"
    line = float(turn.locator(".turn-text").evaluate("(el) => getComputedStyle(el).lineHeight").rstrip("px"))
    assert text["height"] >= 3.5 * line, "the message's own line breaks are not kept"
    assert turn.locator(".turn-text").inner_text() == answer
    screenshot(tab, "dataset-multi-line-rows")
