"""Which device a trainer here uses, and, on a worker started for CUDA, why there is none: never a silent fall back
to the CPU (PyPI's torch 2.13.0 is a CUDA 13 build: an older driver or GPU leaves torch.cuda unavailable, and a
"GPU worker" then trained on the CPU, announcing itself as one)."""

from __future__ import annotations

import os
from pathlib import Path

DEVICE_ENV = "LORASTUDIO_DEVICE"  # auto | cuda | cpu; `lorastudio worker --device` sets it for its trainers
DRIVER_VERSION = Path("/proc/driver/nvidia/version")


class DeviceUnavailable(RuntimeError):
    """The device this worker was started for is not usable here; the message says why and what to do."""


def wanted_device() -> str:
    value = os.environ.get(DEVICE_ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "cuda", "cpu"):
        raise DeviceUnavailable(f"{DEVICE_ENV}={value!r} is not a device: use auto, cuda or cpu.")
    return value


def pick_device() -> str:
    """CUDA when there is a GPU, else the CPU; with LORASTUDIO_DEVICE=cuda a GPU or DeviceUnavailable, with cpu
    the CPU."""
    import torch

    wanted = wanted_device()
    if wanted == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if wanted == "cuda":
        raise DeviceUnavailable(cuda_problem())
    return "cpu"


def cuda_problem(driver_file: Path = DRIVER_VERSION) -> str:
    """Why torch sees no CUDA device here, and the fix."""
    import torch

    built = torch.version.cuda
    head = "This worker was started for CUDA (--device cuda), but torch sees no usable GPU: "
    if built is None:
        return head + (f"torch {torch.__version__} is a CPU-only build. Install a CUDA build of torch (PyTorch's "
                       "wheel index for your driver's CUDA version, https://download.pytorch.org/whl/cuXXX).")
    if not driver_file.exists():
        return head + (f"no NVIDIA driver is loaded on this host ({driver_file} is missing; torch {torch.__version__}"
                       f" is built for CUDA {built}). Install the NVIDIA driver, or in a container pass the GPU "
                       "through (docker run --gpus all, or compose's device reservation).")
    driver = driver_file.read_text(errors="replace").splitlines()[0].strip() if driver_file.stat().st_size else "?"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = f" CUDA_VISIBLE_DEVICES={visible!r} hides the GPUs." if visible is not None and not visible.strip(" ,") \
        else ""
    return head + (f"torch {torch.__version__} is built for CUDA {built}, and the driver here ({driver}) cannot run "
                   f"it — CUDA {built} needs a recent driver and drops older GPU generations.{hidden} Update the "
                   "NVIDIA driver, or install a torch build for the CUDA version your driver supports "
                   "(https://download.pytorch.org/whl/cuXXX).")
