"""Generation on the studio's models: the wire protocol between the web (which never loads weights) and the
worker-side generation service (worker/generation)."""
