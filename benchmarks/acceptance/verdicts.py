"""Checks from what benchmarks/gpu_acceptance.py saw: a studio run, the baseline, the packing piece, a resume
(torch-free: the numbers come from the database and from the pieces' RESULT lines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.acceptance.figures import (
    MEMORY_GOAL,
    MFU_GOAL,
    SPEEDUP_GOAL,
    Check,
    gpu_peak_flops,
    loss_falls,
    mfu,
    relative_error,
    speed_passed,
    steady_rate,
)

# Packing vs padding, relative: |Δ loss sum| / loss sum and ‖Δ embedding gradient‖ / ‖gradient‖. In fp32 only the
# summation order differs between the layouts; in bf16 the bar is this floor or twice the precision's own
# rounding noise (padded bf16 against padded fp32), whichever is larger.
PACKING_FP32 = {"loss": 1e-5, "grad": 1e-4}
PACKING_BF16_FLOOR = {"loss": 2e-3, "grad": 2e-2}
# The GPU's memory figures of a run, best first (benchmarks/acceptance/studio.py gathers them).
MEMORY_SOURCES = {"gpu_used_mb": "the GPU's memory in use at the run's logs (the run's highest)",
                  "gpu_peak_mb": "nvidia-smi, the GPU's processes, sampled every 0.5 s",
                  "gpu_reserved_mb": "the CUDA caching allocator's peak reservation"}
# A resumed run replays the steps after its checkpoint: same data, weights, optimizer and random state, so the same
# losses up to the device's nondeterminism (atomics in CUDA backward kernels).
REPLAY_TOLERANCE = 2e-2


def model_params(folder: Path) -> int:
    """N: every parameter of the base, from its config.json (worker.planning.estimate.ModelShape)."""
    from worker.planning.estimate import ModelShape

    return ModelShape.from_config(json.loads((folder / "config.json").read_text())).total_params()


def peak_flops(device: dict[str, Any]) -> tuple[float | None, str]:
    """The peak MFU is measured against: a GPU's datasheet figure from the estimator's table, else (and on the
    CPU) the matmul the probe timed."""
    measured = device.get("matmul_flops")
    measured_source = f"measured {device.get('matmul_dtype', '')} matmul"
    if device.get("kind") == "cuda":
        flops, source = gpu_peak_flops(device.get("name", ""), bool(device.get("bf16", True)))
        if flops is not None:
            return flops, source
        return measured, f"{measured_source} ({source})"
    return measured, measured_source


def train_check(name: str, run: dict[str, Any], device: str) -> Check:
    """[hard] The run succeeded, recorded the device asked for, and its loss fell."""
    falls, first, last = loss_falls(run["losses"])
    on_device = run["device"] == device
    numbers = {"run": run["id"], "status": run["status"], "device": run["device"], "steps": len(run["losses"]),
               "loss_first": first, "loss_last": last, "loss_falls": falls}
    why = run.get("error") or ("" if on_device else f"recorded device {run['device']!r}, not {device!r}") or (
        "" if falls else "the loss did not fall")
    return Check(name, True, run["status"] == "succeeded" and on_device and falls, numbers, why)


def speed_check(name: str, method: str, run: dict[str, Any], baseline: dict[str, Any] | str, folder: Path,
                device: dict[str, Any]) -> Check:
    """[goal] Steady tokens/s (after 2 warm-up steps) of the studio over the baseline's; MFU of each."""
    params = model_params(folder)
    peak, source = peak_flops(device)
    studio = steady_rate(run["points"])
    goal = f"goal ≥ {SPEEDUP_GOAL}x" + (f" and MFU ≥ {MFU_GOAL:.0%}" if method == "lora" else "")
    numbers: dict[str, Any] = {"studio_tokens_per_s": studio, "mfu": mfu(studio or 0.0, params, peak),
                               "params": params, "peak_tflops": peak / 1e12 if peak else None}
    if isinstance(baseline, str):
        return Check(name, False, False, numbers, f"the baseline failed: {baseline}")
    base = steady_rate([tuple(p) for p in baseline["points"]])
    ratio = studio / base if studio and base else None
    numbers |= {"baseline_tokens_per_s": base, "speedup": ratio, "baseline_mfu": mfu(base or 0.0, params, peak),
                "baseline_loss_last": baseline["losses"][-1] if baseline["losses"] else None,
                "baseline_memory_gb": baseline["memory_mb"] / 1024}
    return Check(name, False, speed_passed(ratio, numbers["mfu"], method), numbers, f"{goal}; peak: {source}")


def memory_check(name: str, spec: dict[str, Any], run: dict[str, Any], folder: Path,
                 device: dict[str, Any]) -> Check:
    """[goal] The estimator's peak memory for the run's spec on this device against the measured peak."""
    from worker.planning.device_profiles import cpu_profile, worker_profile
    from worker.planning.estimate import ModelShape, estimate
    from worker.planning.spec import RunSpec

    cuda = device.get("kind") == "cuda"
    profile = worker_profile({"hostname": "this machine", **device}) if cuda else cpu_profile()
    shape = ModelShape.from_config(json.loads((folder / "config.json").read_text()))
    estimated = estimate(RunSpec.model_validate(spec), shape, profile, None).peak_memory_gb
    measured_mb, source = measured_memory(run, cuda)
    if not measured_mb:
        return Check(name, False, None, {"estimate_gb": estimated}, "no measured peak")
    measured = measured_mb / 1024
    error = relative_error(estimated, measured)
    numbers = {"estimate_gb": estimated, "measured_gb": measured, "error": error} | {
        f"run_{key.removesuffix('_mb')}_gb": run[key] / 1024 for key in (*MEMORY_SOURCES, "memory_mb") if run.get(key)}
    return Check(name, False, abs(error) <= MEMORY_GOAL, numbers, f"goal ±{MEMORY_GOAL:.0%}; measured: {source}")


def measured_memory(run: dict[str, Any], cuda: bool) -> tuple[float | None, str]:
    """The run's peak to hold the estimate against, MiB: on a GPU what the device had to give it (the whole GPU in
    use, the CUDA context included, as the estimate counts it; else nvidia-smi's per-process figure, else the caching
    allocator's reservation), else what tensors held; on the CPU the trainer's peak RSS."""
    if not cuda:
        return run.get("memory_mb"), "the trainer's peak RSS"
    found = next((key for key in MEMORY_SOURCES if run.get(key)), None)
    if found is None:
        return run.get("memory_mb"), "CUDA max allocated (no context, no allocator cache)"
    return run[found], MEMORY_SOURCES[found]


def _within(found: dict[str, float], bars: dict[str, float]) -> bool:
    return found["loss_diff"] <= bars["loss"] and found["grad_diff"] <= bars["grad"]


def packing_check(found: dict[str, Any]) -> Check:
    """[hard] Packed equals padded within the bars, in fp32 and (where the device trains in it) bf16."""
    numbers: dict[str, Any] = {"attention": found["attention"], "examples": found["examples"],
                               "packed_rows": found["packed_rows"]}
    passed, notes = found["packed_rows"] < found["examples"], []
    if not passed:
        notes.append("no row held two examples: nothing was packed")
    for precision in ("fp32", "bf16"):
        if precision not in found:
            continue
        seen = found[precision]
        bars = PACKING_FP32 if precision == "fp32" else {
            key: max(floor, 2 * seen[f"noise_{key}"]) for key, floor in PACKING_BF16_FLOOR.items()}
        ok = _within(seen, bars)
        passed &= ok
        numbers |= {f"{precision}_loss_diff": seen["loss_diff"], f"{precision}_grad_diff": seen["grad_diff"],
                    f"{precision}_tolerance": bars, f"{precision}_unmasked_loss_diff": seen["unmasked_loss_diff"],
                    f"{precision}_unmasked_grad_diff": seen["unmasked_grad_diff"]}
        if not (seen["unmasked_loss_diff"] > bars["loss"] or seen["unmasked_grad_diff"] > bars["grad"]):
            notes.append(f"{precision}: attention across examples stays within the bar too on this model")
    return Check("packing", True, passed, numbers, "; ".join(notes))


def _replay_difference(before: dict[str, Any], after: dict[str, Any], checkpoint: int) -> float | None:
    """Largest relative difference between the killed attempt's losses after the checkpoint and the resumed
    attempt's at the same steps."""
    old = {s: loss for s, loss in zip(before["steps"], before["losses"], strict=True) if s > checkpoint}
    new = dict(zip(after["steps"], after["losses"], strict=True))
    pairs = [(old[s], new[s]) for s in old if s in new]
    if not pairs:
        return None
    return max(abs(a - b) / max(abs(a), 1e-12) for a, b in pairs)


def resume_check(seen: dict[str, Any], steps: int, device: str) -> Check:
    """[hard] Killed past a checkpoint, the run resumed from that step on a new worker, replayed the lost steps
    with the same losses, trained every step once, finished, and recorded the device."""
    if not seen.get("killed"):
        why = (f"the run was {seen['status']} before it could be killed past a stored checkpoint "
               f"(checkpoint {seen.get('checkpoint')}); {seen.get('error', '')}")
        return Check("resume", True, False, {"status": seen["status"], "checkpoint": seen.get("checkpoint")}, why)
    checkpoint, resumed = seen["checkpoint"], seen.get("resumed") or {}
    replay = _replay_difference(seen["before"], seen, checkpoint)
    every_step_once = seen["steps"] == list(range(1, steps + 1))
    numbers = {"checkpoint": checkpoint, "killed_at_step": seen["killed_at_step"],
               "resumed_from": resumed.get("from_step"), "resumed_after_s": seen["resumed_after_s"],
               "attempts": seen["attempts"], "status": seen["status"], "device": seen["device"],
               "final_step": (seen.get("final") or {}).get("steps"), "every_step_once": every_step_once,
               "replayed_loss_diff": replay}
    failures = [why for ok, why in [
        (seen["status"] == "succeeded", seen.get("error", "not succeeded")),
        (resumed.get("from_step") == checkpoint, f"resumed from {resumed.get('from_step')}, not {checkpoint}"),
        (seen["attempts"] == 2, f"{seen['attempts']} attempts"), (seen["device"] == device, "device"),
        (numbers["final_step"] == steps, f"finished at step {numbers['final_step']}"),
        (every_step_once, "steps missing or repeated"),
        (replay is not None and replay <= REPLAY_TOLERANCE, f"replayed losses differ by {replay}")] if not ok]
    return Check("resume", True, not failures, numbers, "; ".join(str(f) for f in failures))

