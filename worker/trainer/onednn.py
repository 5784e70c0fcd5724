"""A bounded oneDNN primitive cache for CPU training.

oneDNN (PyTorch's CPU kernels for bf16 matmuls) keeps up to 1,024 compiled primitives by default, each with the
buffers it was made with, keyed by their shapes. Packed training batches change shape every step (the rows' width,
each example's length in the attention), so the cache only grows: on SmolLM2 LoRA (benchmarks/training_throughput
qv8) the trainer's resident memory rose ~300 MB over 10 steps of nothing new. The layers of one batch share their
shapes, so a small cache keeps its hits. oneDNN reads ONEDNN_PRIMITIVE_CACHE_CAPACITY when it first builds a
primitive: set here before the model is loaded, unless the environment already chose.
"""

from __future__ import annotations

import os

CAPACITY_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
TRAINING_CAPACITY = 64


def bound_primitive_cache(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Cap oneDNN's primitive cache for this process (the environment's own choice kept); returns the capacity."""
    return environ.setdefault(CAPACITY_ENV, str(TRAINING_CAPACITY))
