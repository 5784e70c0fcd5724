"""Use cases: they flush, never commit; the boundary (request, task) commits."""
