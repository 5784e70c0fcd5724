"""LoRA Studio: the web app and its domain."""
