"""The generation service: base models kept loaded, LoRA adapters applied per request, replies streamed via Redis."""
