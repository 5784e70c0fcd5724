"""A bounded oneDNN primitive cache for CPU training.

oneDNN (PyTorch's CPU kernels for bf16 matmuls) keeps up to 1,024 compiled primitives by default, each with the
buffers it was made with, keyed by their shapes. Packed training batches change shape every step (the rows' width,
each example's length in the attention), so the cache only grows: on SmolLM2 LoRA (benchmarks/training_throughput
qv8) the trainer's resident memory rose ~300 MB over 10 steps of nothing new. The layers of one batch share their
shapes, so a small cache keeps its hits. oneDNN reads ONEDNN_PRIMITIVE_CACHE_CAPACITY when it first builds a
primitive: set here before the model is loaded, unless the environment already chose.

Measured (training_throughput --lever-ablation, C against C-dnncache): LoRA 1737 against 2045 MB (qv8) and 2417
against 2634 MB (all16) at the same speed (+3 %, -1 %), so LoRA runs get the bound; QLoRA saved 270 and 216 MB but
ran 15 % and 7 % slower with it (its 4-bit path builds more primitives than 64 keep), so QLoRA runs do not.
A cache of 0 took 45.8 s where 64 took 26.1 s (qv8 LoRA).
"""

from __future__ import annotations

import os

CAPACITY_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
TRAINING_CAPACITY = 64


def bound_primitive_cache(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Cap oneDNN's primitive cache for this process (the environment's own choice kept); returns the capacity."""
    return environ.setdefault(CAPACITY_ENV, str(TRAINING_CAPACITY))
