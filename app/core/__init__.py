"""The studio's domain and persistence: no FastAPI, Celery or torch here."""
