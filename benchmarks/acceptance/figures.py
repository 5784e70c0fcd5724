"""The arithmetic and the judgement of benchmarks/gpu_acceptance.py: MFU, peaks, rates, verdicts (torch-free, pure).

A check is *hard* when the studio is broken if it fails (a run not on the device asked for, a loss that does not
fall, packing that changes the loss, a resume that does not continue): a failed hard check makes the script exit
non-zero. A speed or memory goal is *soft*: it is reported as PASS or BELOW GOAL and never fails the exit code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from worker.planning.device_profiles import GPU_MFU, GPU_TFLOPS, DeviceProfile

# The goals on H100/H200-class GPUs (LoRA on the Llama-3.2-1B-shaped model).
SPEEDUP_GOAL = 1.5  # studio tokens/s over the plain HF Trainer + PEFT baseline's, same data and settings
MFU_GOAL = 0.40  # model FLOPs utilisation of LoRA: 4 × N FLOPs per real token over the device's peak
MEMORY_GOAL = 0.25  # |estimate - measured| / measured, as benchmarks/estimator_accuracy.py judges it
LOSS_DROP = 0.02  # "the loss falls": the last quarter's mean at least 2 % below the first quarter's


@dataclass
class Check:
    """One line of the report: what was checked, the numbers measured, and whether it met its bar.

    passed None: skipped (note says why). hard: a failure fails the script; soft: reported as BELOW GOAL.
    """

    name: str
    hard: bool
    passed: bool | None
    numbers: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def verdict(self) -> str:
        """PASS, FAIL (hard), BELOW GOAL (soft) or SKIPPED."""
        if self.passed is None:
            return "SKIPPED"
        if self.passed:
            return "PASS"
        return "FAIL" if self.hard else "BELOW GOAL"

    def to_dict(self) -> dict[str, Any]:
        """The check as the JSON report holds it."""
        return asdict(self) | {"verdict": self.verdict}


def model_flops_per_token(params: int) -> float:
    """Training FLOPs per real token as the issue counts them: 4 × N (forward 2N, input gradients 2N; the frozen
    base computes no weight gradients). Attention's own FLOPs are left out, so the MFU is a lower bound."""
    return 4.0 * params


def mfu(tokens_per_second: float, params: int, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved 4N FLOP/s over the peak (None when the peak is not known)."""
    if not peak_flops or peak_flops <= 0:
        return None
    return tokens_per_second * model_flops_per_token(params) / peak_flops


def gpu_peak_flops(name: str, bf16: bool = True) -> tuple[float | None, str]:
    """The datasheet bf16 peak FLOP/s of the GPU named `name` from the estimator's table (worker.planning.
    device_profiles.GPU_TFLOPS, with its rule: the first fragment found in the name), and the entry that gave it;
    (None, why) when no entry matches. A GPU without bf16 gets the estimator's own figure for it."""
    if not bf16:
        return DeviceProfile("gpu", "cuda", name, 0.0, bf16=False).flops / GPU_MFU, "the estimator's pre-bf16 figure"
    entry = next((key for key in GPU_TFLOPS if key.lower() in name.lower()), None)
    if entry is None:
        return None, f"no entry for {name!r} in worker.planning.device_profiles"
    return GPU_TFLOPS[entry] * 1e12, f"datasheet bf16 {entry} ({GPU_TFLOPS[entry]} TFLOP/s)"


def steady_rate(points: Sequence[tuple[float, int]], warmup: int = 2) -> float | None:
    """Tokens per second between the warmup-th (elapsed_s, tokens_seen) point and the last: the first steps pay
    one-off costs (kernel selection, allocator growth) that a long run does not. None with too few points."""
    if len(points) < warmup + 2:
        warmup = max(0, len(points) - 2)
    if len(points) < 2:
        return None
    (t0, n0), (t1, n1) = points[warmup], points[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def loss_falls(losses: Sequence[float], drop: float = LOSS_DROP) -> tuple[bool, float, float]:
    """(whether the mean of the last quarter of the losses is at least `drop` below the first quarter's, first
    mean, last mean); needs 4 finite losses or more."""
    finite = [x for x in losses if isinstance(x, int | float) and math.isfinite(x)]
    if len(finite) < 4 or len(finite) < len(losses):
        return False, math.nan, math.nan
    k = max(1, len(finite) // 4)
    first, last = sum(finite[:k]) / k, sum(finite[-k:]) / k
    return last <= (1 - drop) * first, first, last


def relative_error(estimate: float, measured: float) -> float:
    """(estimate - measured) / measured: above 0 the estimate was too high."""
    return (estimate - measured) / measured if measured else math.inf


def speed_passed(ratio: float | None, mfu_value: float | None, method: str) -> bool:
    """Whether the studio met the speed goals: SPEEDUP_GOAL for every method, MFU_GOAL for LoRA (where known)."""
    if ratio is None or ratio < SPEEDUP_GOAL:
        return False
    return method != "lora" or mfu_value is None or mfu_value >= MFU_GOAL


def exit_code(checks: Sequence[Check]) -> int:
    """1 when a hard check failed, else 0 (soft goals and skipped checks never fail the script)."""
    return int(any(c.hard and c.passed is False for c in checks))


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
        return f"{value:.3g}"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def line(check: Check) -> str:
    """One printed line: verdict, name, numbers, note."""
    numbers = "  ".join(f"{key}={_number(value)}" for key, value in check.numbers.items())
    kind = "hard" if check.hard else "goal"
    return f"{check.verdict:<10} [{kind}] {check.name:<28} {numbers}" + (f"  ({check.note})" if check.note else "")


def report(checks: Sequence[Check], context: dict[str, Any]) -> dict[str, Any]:
    """The JSON report: the context (device, model, settings), every check, and the overall verdict."""
    return {**context, "checks": [c.to_dict() for c in checks], "hard_failures": [c.name for c in checks
                                                                                 if c.hard and c.passed is False],
            "passed": exit_code(checks) == 0}
