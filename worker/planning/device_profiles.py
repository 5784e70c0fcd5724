"""Devices a run may be sized for: this CPU, common GPU sizes, or a live worker as it announced itself (no torch)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from worker.planning.allocator import find_allocator

GPU_MFU, DEFAULT_GPU_TFLOPS, DEFAULT_FP16_TFLOPS = 0.30, 60.0, 30.0
# Dense bf16 tensor-core TFLOPS with fp32 accumulation (what PyTorch's matmuls use), from NVIDIA's datasheets; the
# first name fragment found in the device's name wins, so the specific ones come first (H100 PCIe and NVL are
# slower than the SXM part; GeForce cards run fp32 accumulation at half their fp16-accumulate rate).
GPU_TFLOPS = {"GB200": 2500, "B200": 2250, "H100 PCIe": 756, "H100 NVL": 835, "H200": 989, "H100": 989,
              "A100": 312, "L40S": 362, "L40": 181, "A10G": 125, "A10": 125, "L4": 121, "A6000": 155,
              "4090": 165, "3090": 36}
# GPUs without bf16 (before Ampere): the trainer trains them under fp16 autocast, at their fp16 tensor-core rates
# with fp32 accumulation (a P100 has no tensor cores: its fp16 vector rate).
GPU_FP16_TFLOPS = {"V100": 125, "T4": 65, "P100": 18.7}


@dataclass(frozen=True)
class Throughput:
    """A method's training speed as a worker measured it at its start (worker.trainer.calibrate)."""

    flops: float  # effective FLOP/s: tokens/s × estimate.flops_per_token of the calibration model
    low: float = 1.0  # the fastest timed step's time over the median step's (≤ 1)
    high: float = 1.0  # the slowest's (≥ 1)
    startup_s: float = 0.0  # the trainer's imports plus loading and setting up the (small) calibration model

    @classmethod
    def from_dict(cls, data: Any) -> Throughput | None:
        """Read an announced measurement; None where it is missing or not a positive speed."""
        try:
            flops = float(data["flops"])
            spread = float(data.get("low", 1.0)), float(data.get("high", 1.0)), float(data.get("startup_s", 0.0))
        except (TypeError, KeyError, ValueError, AttributeError):
            return None
        return cls(flops, *spread) if flops > 0 else None


@dataclass(frozen=True)
class DeviceProfile:
    """Where a run would train: kind, memory and speed (measured, where the worker calibrated itself)."""

    key: str
    kind: str  # "cpu" | "cuda"
    name: str
    memory_gb: float
    bf16: bool = True
    count: int = 1
    allocator: str = "system"  # the heap allocator of its trainer processes (worker.planning.allocator)
    measured: dict[str, Throughput] = field(default_factory=dict)  # by method ("lora", "qlora"); empty: not measured

    @property
    def flops(self) -> float:
        """Sustained FLOP/s of one of its GPUs assumed for training (a share of the datasheet peak) in the precision
        the trainer uses there: bf16 where the GPU has it, else fp16."""
        table, default = (GPU_TFLOPS, DEFAULT_GPU_TFLOPS) if self.bf16 else (GPU_FP16_TFLOPS, DEFAULT_FP16_TFLOPS)
        tflops = next((v for k, v in table.items() if k.lower() in self.name.lower()), default)
        return tflops * 1e12 * GPU_MFU


def cpu_profile(memory_gb: float | None = None) -> DeviceProfile:
    """This machine's CPU and RAM (what a local CPU worker would train on, with the allocator it would find)."""
    ram = memory_gb or os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    return DeviceProfile("cpu", "cpu", f"{os.cpu_count()}-core CPU (this machine)", round(ram, 1),
                         bf16=cpu_has_native_bf16(), allocator=find_allocator("auto")[0])


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bf16 natively (AVX512-BF16 or AMX).

    oneDNN also runs bf16 on plain AVX-512 CPUs (torch's mkldnn check says yes there), but by emulation: on an
    Ice Lake Xeon a bf16 matmul measured 3.4x slower than fp32, so only native support counts.
    `cpuinfo` is the text of /proc/cpuinfo (read when not given).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


GPU_PROFILES = {"gpu-24": DeviceProfile("gpu-24", "cuda", "24 GB GPU (RTX 4090, L4, A10)", 24.0),
                "gpu-40": DeviceProfile("gpu-40", "cuda", "A100 40 GB", 40.0),
                "gpu-80": DeviceProfile("gpu-80", "cuda", "H100 80 GB", 80.0)}


def device_profiles() -> dict[str, DeviceProfile]:
    """The profiles a user may pick when no worker is live: this CPU and common GPU sizes."""
    return {"cpu": cpu_profile(), **GPU_PROFILES}


def worker_profile(worker: dict[str, Any]) -> DeviceProfile:
    """The profile of a live worker as announced in the registry ({hostname, kind, name, memory_gb, bf16, ...,
    calibration: {method: {flops, low, high, startup_s}} once it has measured itself})."""
    kind = "cuda" if worker.get("kind") == "cuda" else "cpu"
    calibration = worker.get("calibration") if isinstance(worker.get("calibration"), dict) else {}
    measured = {method: speed for method, data in calibration.items() if (speed := Throughput.from_dict(data))}
    return DeviceProfile(str(worker.get("hostname", "worker")), kind, str(worker.get("name", kind)),
                         float(worker.get("memory_gb") or 0), bool(worker.get("bf16", False)),
                         int(worker.get("count") or 1), str(worker.get("allocator") or "system"), measured)
