"""The training engine (torch): a function of a RunSpec. Imports nothing of the studio (app/, tasks, the job
runner); builds on worker.planning, the torch-free half."""
