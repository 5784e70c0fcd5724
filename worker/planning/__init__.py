"""The torch-free planning half of training: spec, presets, estimates, device profiles, allocator choice,
checkpoint manifest. The web imports only this half; the engine (worker.trainer) builds on it."""
