"""A plan's length against its dataset: how many optimizer steps it takes, whether that can teach the adapter
anything, and the settings that make a small dataset learn (no torch; the designer and the API use it).

The rule of thumb behind the numbers: a LoRA adapter moves away from its base by roughly the sum of its learning
rates over the optimizer steps (the "learning budget", steps × peak lr). Measured on SmolLM2-135M-Instruct with
LLaMA-Factory's identity.json (91 rows): 22 steps at 2e-4 (budget 0.004) left the answers word for word the base
model's; 36 steps at 1e-3 (0.036) learned the new name but not the author; 88+ steps at 1e-3 (0.09+) learned both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from worker.planning.spec import RunSpec

# Below this budget a run is expected to change little; from GOOD_BUDGET on, a small dataset's facts are learned.
LITTLE_BUDGET = 0.02
GOOD_BUDGET = 0.1
# Presets fitted to a small dataset train at least this many optimizer steps…
MIN_STEPS = 100
# …with at most this many passes over it (beyond it a small dataset is memorised rather than learned from).
MAX_EPOCHS = 12.0
# The learning rate a fitted preset may rise to where more epochs alone cannot reach GOOD_BUDGET, on datasets of
# at most SMALL_ROWS examples (larger ones get their budget from more steps at the preset's own rate).
MAX_FITTED_LR = 1e-3
SMALL_ROWS = 500


def eval_count(rows: int, fraction: float) -> int:
    """Examples held out for evaluation: `fraction` of them, at least one when fraction > 0 (the trainer's split)."""
    if fraction <= 0 or rows < 2:
        return 0
    return min(rows - 1, max(1, round(rows * fraction)))


@dataclass(frozen=True)
class Plan:
    """How long a spec trains on a dataset of `rows` examples."""

    rows: int
    train_rows: int
    steps_per_epoch: int
    steps: int
    epochs: float
    learning_rate: float

    @property
    def budget(self) -> float:
        """Optimizer steps × peak learning rate."""
        return self.steps * self.learning_rate

    def describe(self) -> str:
        """E.g. '22 optimizer steps at lr 2e-4 on 91 rows'."""
        steps = f"{self.steps} optimizer step{'s' if self.steps != 1 else ''}"
        rows = f"{self.rows} row{'s' if self.rows != 1 else ''}"
        return f"{steps} at lr {self.learning_rate:.0e} on {rows}".replace("e-0", "e-")


def plan(spec: RunSpec, rows: int) -> Plan:
    """The optimizer steps `spec` takes on `rows` examples (max_steps where set, else epochs × steps per epoch)."""
    t = spec.training
    train_rows = max(0, rows - eval_count(rows, spec.data.eval_fraction))
    per_step = t.per_device_batch_size * t.gradient_accumulation_steps * spec.resources.gpus  # the global batch
    steps_per_epoch = max(1, math.ceil(train_rows / per_step)) if train_rows else 0
    if t.max_steps > 0:
        steps = t.max_steps
        epochs = steps / steps_per_epoch if steps_per_epoch else 0.0
    else:
        steps, epochs = math.ceil(steps_per_epoch * t.num_epochs), t.num_epochs
    return Plan(rows, train_rows, steps_per_epoch, steps, epochs, t.learning_rate)


def plan_warning(spec: RunSpec, rows: int) -> str | None:
    """A sentence for the designer when the plan is too short to teach the adapter much, else None."""
    p = plan(spec, rows)
    if not p.train_rows or p.budget >= LITTLE_BUDGET:
        return None
    return (f"{p.describe()}: expect little change. Train longer (more epochs or steps) or at a higher learning "
            f"rate; {fitted_hint(spec, rows)}")


def fitted_hint(spec: RunSpec, rows: int) -> str:
    """What fit_to_dataset would set, as advice."""
    fitted, changes = fit_to_dataset(spec, rows)
    if not changes:
        return (f"{_num(MAX_EPOCHS)} epochs are the most that suit {rows} rows, so more (or more varied) examples, "
                "or a smaller batch, are what gives more optimizer steps.")
    return f"for {rows} rows try {', '.join(changes)} ({plan(fitted, rows).describe()})."


def fit_to_dataset(spec: RunSpec, rows: int) -> tuple[RunSpec, list[str]]:
    """The spec with epochs (and, where epochs cannot do it, the learning rate) raised so that a small dataset is
    learned: at least MIN_STEPS optimizer steps within MAX_EPOCHS, and on a small dataset a budget of GOOD_BUDGET.
    A spec that already reaches both, or sets max_steps, is returned unchanged. Returns the spec and what changed,
    as text."""
    p = plan(spec, rows)
    t = spec.training
    enough_budget = p.budget >= GOOD_BUDGET or rows > SMALL_ROWS
    if not p.steps_per_epoch or t.max_steps > 0 or (p.steps >= MIN_STEPS and enough_budget):
        return spec, []
    changes: list[str] = []
    if p.steps_per_epoch * MAX_EPOCHS < MIN_STEPS and t.gradient_accumulation_steps > 1:
        # Too few rows for the effective batch: fewer forward passes per step give more steps per epoch.
        accumulation = max(1, min(t.gradient_accumulation_steps,
                                  math.floor(p.train_rows * MAX_EPOCHS / MIN_STEPS / t.per_device_batch_size)))
        if accumulation < t.gradient_accumulation_steps:
            t = t.model_copy(update={"gradient_accumulation_steps": accumulation})
            spec = spec.model_copy(update={"training": t})
            p = plan(spec, rows)
            changes.append(f"training.gradient_accumulation_steps {accumulation}")
    epochs = t.num_epochs
    wanted = min(MAX_EPOCHS, max(epochs, math.ceil(MIN_STEPS / p.steps_per_epoch)))
    if wanted > epochs:
        epochs = float(wanted)
        changes.append(f"training.num_epochs {_num(epochs)}")
    steps = math.ceil(p.steps_per_epoch * epochs)
    lr = t.learning_rate
    if rows <= SMALL_ROWS and steps * lr < GOOD_BUDGET and lr < MAX_FITTED_LR:
        lr = min(MAX_FITTED_LR, _round_up(GOOD_BUDGET / steps))
        changes.append(f"training.learning_rate {lr:g}")
    fitted = spec.model_copy(update={"training": t.model_copy(update={"num_epochs": epochs, "learning_rate": lr})})
    return RunSpec.model_validate(fitted.model_dump()), changes


def _round_up(value: float) -> float:
    """`value` rounded up to one significant digit (9.1e-4 → 1e-3), as people write learning rates."""
    exponent = math.floor(math.log10(value))
    return float(f"{math.ceil(value / 10**exponent - 1e-9)}e{exponent}")


def _num(value: float) -> str:
    return f"{value:g}"


# The strongest learning rate a "stronger settings" clone proposes (LoRA on small models stays stable up to here).
MAX_STRONGER_LR = 2e-3
STRONGER_RANK = 16


def stronger(spec: RunSpec, rows: int) -> tuple[RunSpec, list[str]]:
    """Settings for a clone of a run that learned little: fitted to the dataset's size, LoRA on every linear layer
    at rank 16 or more, and where that changes nothing, twice the epochs and learning rate (within their caps).
    Returns the spec and what changed, as text."""
    fitted, changes = fit_to_dataset(spec, rows)
    lora = fitted.lora
    updates: dict[str, object] = {}
    if lora.target_modules != "all-linear":
        updates["target_modules"] = "all-linear"
        changes.append("lora.target_modules all-linear")
    if lora.r < STRONGER_RANK:
        updates |= {"r": STRONGER_RANK, "alpha": 2.0 * STRONGER_RANK}
        changes.append(f"lora.r {STRONGER_RANK}, lora.alpha {2 * STRONGER_RANK}")
    training = fitted.training
    t_updates: dict[str, object] = {}
    if not changes:
        if training.max_steps > 0:
            t_updates["max_steps"] = training.max_steps * 2
            changes.append(f"training.max_steps {training.max_steps * 2}")
        elif training.num_epochs < MAX_EPOCHS:
            t_updates["num_epochs"] = min(MAX_EPOCHS, training.num_epochs * 2)
            changes.append(f"training.num_epochs {_num(t_updates['num_epochs'])}")  # type: ignore[arg-type]
        if training.learning_rate < MAX_STRONGER_LR:
            t_updates["learning_rate"] = min(MAX_STRONGER_LR, training.learning_rate * 2)
            changes.append(f"training.learning_rate {t_updates['learning_rate']:g}")
    data = fitted.model_dump()
    data["lora"] |= updates
    data["training"] |= t_updates
    return RunSpec.model_validate(data), changes
