"""TrainerError: a failure with a stable code and a message a person can act on."""

from __future__ import annotations


class TrainerError(Exception):
    """A failure the trainer reports as an "error" event with a stable `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
