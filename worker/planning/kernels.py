"""Sizes the engine's kernels run with, which the memory estimate models too: one source for both."""

# Logits per chunk of the loss through the head (worker/trainer/loss.py): 32 MiB in fp32, about what a CPU's
# last-level cache holds. In benchmarks/loss_speed.py (SmolLM2 head, 2-core EPYC) 2**23 ran 1.65x faster than
# 2**25, and 2**22 no faster.
LOSS_CHUNK_ELEMENTS = 2**23
