"""Thin Celery tasks: open a scope, claim by id, hand over to the job runner (worker/jobs)."""
