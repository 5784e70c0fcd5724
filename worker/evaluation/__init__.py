"""Evaluation's child: `python -m worker.evaluation INPUTS --out RESULTS` generates with the base and the adapter
(worker.generation's engine, in this process), scores (scorers, judge) and summarises (report). inputs, scorers and
report are torch-free; only generate imports the engine."""
