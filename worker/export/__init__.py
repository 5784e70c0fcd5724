"""Exports of a registered adapter version (merged 16-bit model, GGUF, GGUF LoRA), each verified by generation."""
