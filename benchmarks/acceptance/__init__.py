"""The pieces of benchmarks/gpu_acceptance.py: figures (pure judgement), studio (the fleet), work (torch children),
verdicts (checks from what was seen)."""
