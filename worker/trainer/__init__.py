"""The training engine: a function of a RunSpec. Imports nothing of the studio (app/, tasks, launcher)."""
