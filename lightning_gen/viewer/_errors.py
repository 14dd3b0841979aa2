"""The viewer's one error type: a message for the user and the exit code that goes with it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CliError", "existing_logdir"]


class CliError(Exception):
    """A message for the user and the exit code that goes with it (1: nothing to show, 2: bad arguments)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def existing_logdir(logdir: str | os.PathLike[str]) -> Path:
    """``logdir`` as a path, which must exist.

    Raises:
        CliError: It does not (code 2), naming it as the user wrote it.
    """
    root = Path(logdir)
    if not root.exists():
        raise CliError(f"LOGDIR {str(logdir)!r} does not exist", code=2)
    return root
