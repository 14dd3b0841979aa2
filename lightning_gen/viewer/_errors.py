"""The viewer's one error type: a message for the user and the exit code that goes with it."""

from __future__ import annotations

__all__ = ["CliError"]


class CliError(Exception):
    """A message for the user and the exit code that goes with it (1: nothing to show, 2: bad arguments)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
