"""DivergenceGuard: stop a run whose loss or gradient norm went NaN/inf or exploded, so it ends `diverged`."""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback


class DivergenceGuard(TrainerCallback):
    """Watches every Trainer log; on divergence records why and asks the Trainer to stop at once.

    A diverged adapter is worse than none: the loop raises after training stops, so the run fails with
    code `diverged` and no adapter is marked succeeded. The explosion test compares each training loss with
    the first one logged: a fine-tune's loss falls from its start, so several times the start means the
    optimiser blew up, while later noise around a low loss does not trip it.
    """

    def __init__(self, loss_factor: float | None) -> None:
        self.loss_factor = loss_factor
        self.first_loss: float | None = None
        self.reason: str | None = None

    def check(self, step: int, logs: dict[str, Any]) -> str | None:
        """Why these logged values mean divergence, or None."""
        for key in ("loss", "grad_norm", "eval_loss"):
            value = logs.get(key)
            if value is not None and not math.isfinite(float(value)):
                return f"{key} became {float(value)} at step {step}"
        loss = logs.get("loss")
        if loss is None:
            return None
        loss = float(loss)
        if self.first_loss is None:
            self.first_loss = loss
        elif self.loss_factor and loss > self.loss_factor * self.first_loss:
            return (f"training loss exploded to {loss:.4g} at step {step}, more than "
                    f"{self.loss_factor:g}× the first logged loss {self.first_loss:.4g}")
        return None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if self.reason or not logs:
            return
        self.reason = self.check(int(state.global_step), logs)
        if self.reason:
            control.should_training_stop = True
            control.should_evaluate = control.should_save = False
