// The run page's clock between two measurements by the server, and the duration words it shows.
import assert from "node:assert/strict";
import { test } from "node:test";

import { words } from "../../frontend/static/js/charts/format.js";
import { clockAt, readClock } from "../../frontend/static/js/run_clock.js";

test("while running, elapsed grows and the ETA counts down to zero, never below", () => {
  const measured = { running: true, elapsed: 100, eta: 5 };
  assert.deepEqual(clockAt(measured, 3), { running: true, elapsed: 103, eta: 2 });
  assert.deepEqual(clockAt(measured, 9), { running: true, elapsed: 109, eta: 0 });
  assert.deepEqual(clockAt({ running: true, elapsed: 10, eta: null }, 2), { running: true, elapsed: 12, eta: null });
});

test("an ended run's duration stands still", () => {
  assert.deepEqual(clockAt({ running: false, elapsed: 312, eta: null }, 60), { running: false, elapsed: 312, eta: null });
});

test("the clock's data attributes, an unknown ETA as null", () => {
  assert.deepEqual(readClock({ running: "true", elapsedS: "12.5", etaS: "30.0" }), { running: true, elapsed: 12.5, eta: 30 });
  assert.deepEqual(readClock({ running: "false", elapsedS: "7.0" }), { running: false, elapsed: 7, eta: null });
});

test("durations read as the server writes them (app/pages/run_figures.duration)", () => {
  assert.equal(words(45), "45s");
  assert.equal(words(200), "3m 20s");
  assert.equal(words(7500), "2h 05m");
  assert.equal(words(0), "0s");
  assert.equal(words(null), "—");
});
