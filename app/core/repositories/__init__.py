"""Every select() and update(): plain functions taking the session first."""
