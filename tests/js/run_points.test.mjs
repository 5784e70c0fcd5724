// The live chart's points: a resumed run's repeated steps replace the ones they supersede; replays do not draw twice.
import assert from "node:assert/strict";
import { test } from "node:test";

import { RunPoints } from "../../frontend/static/js/run_points.js";

const steps = (points) => [...points.values()].map((p) => [p.seq, p.step, "eval_loss" in p ? "eval" : "train"]);

test("points in order are all kept, an evaluation beside the train point of its step", () => {
  const points = new RunPoints();
  points.add({ seq: 1, step: 1, loss: 2 });
  points.add({ seq: 2, step: 2, loss: 1.5 });
  points.add({ seq: 3, step: 2, eval_loss: 1.7 });
  points.add({ seq: 2, step: 2, loss: 1.5 }); // replayed after a reconnect
  assert.deepEqual(steps(points), [[1, 1, "train"], [2, 2, "train"], [3, 2, "eval"]]);
});

test("a run resumed from step 2 replaces the points after it", () => {
  const points = new RunPoints();
  [[1, 1], [2, 2], [3, 3], [4, 4]].forEach(([seq, step]) => points.add({ seq, step, loss: 1 / step }));
  points.add({ seq: 5, step: 4, eval_loss: 0.9 });
  points.add({ seq: 9, step: 3, loss: 0.3 }); // the resumed attempt's first point
  assert.deepEqual(steps(points), [[1, 1, "train"], [2, 2, "train"], [9, 3, "train"]]);
  points.add({ seq: 10, step: 4, loss: 0.2 });
  points.add({ seq: 11, step: 4, eval_loss: 0.8 });
  assert.deepEqual(steps(points), [[1, 1, "train"], [2, 2, "train"], [9, 3, "train"], [10, 4, "train"], [11, 4, "eval"]]);
});

test("latest gives the newest finite value of a metric, a resumed run's replacement over the point it replaced", () => {
  const points = new RunPoints();
  points.add({ seq: 1, step: 1, loss: 2, tokens_per_second: 45, tokens_per_second_avg: 45 });
  points.add({ seq: 2, step: 2, loss: 1.5, tokens_per_second: 230, tokens_per_second_avg: 75.8 });
  points.add({ seq: 3, step: 2, eval_loss: 1.7 }); // an evaluation carries no rate
  assert.equal(points.latest("tokens_per_second"), 230);
  assert.equal(points.latest("tokens_per_second_avg"), 75.8);
  assert.equal(points.latest("grad_norm"), null);
  points.add({ seq: 7, step: 2, loss: 1.4, tokens_per_second: 120, tokens_per_second_avg: 120 }); // resumed at 1
  assert.equal(points.latest("tokens_per_second"), 120);
});
