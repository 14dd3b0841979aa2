"""Failures that cross processes as plain data: a type name, a message and the traceback text.

An exception object is never pickled to another process: its class may not be importable there, and its
constructor may not take the arguments `pickle` calls it with (``ShapeError(expected, got)``), so that
``pickle.loads`` raises on the receiving rank, which then leaves the others waiting in the next collective.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

__all__ = ["Failure", "PeerFailed", "RemoteFailure"]


@dataclass(frozen=True)
class Failure:
    """What a process knows of a failure: only strings, so it pickles and unpickles anywhere.

    Example::

        >>> failure = Failure.of(ValueError("bad shape"), rank=1)
        >>> failure.summary()
        'ValueError on rank 1: bad shape'
    """

    type_name: str
    message: str
    traceback: str
    rank: int

    @classmethod
    def of(cls, err: BaseException, *, rank: int) -> Failure:
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        return cls(type_name=type(err).__name__, message=str(err), traceback=text, rank=rank)

    def summary(self) -> str:
        return f"{self.type_name} on rank {self.rank}: {self.message}"


class PeerFailed(Exception):
    """Raised inside a lockstep decode when the vote says another process failed (its cause comes after)."""


class RemoteFailure(RuntimeError):
    """Raised on every process when sampling failed on one of them; ``failure`` says where and why."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.summary())
        self.failure = failure

    def __reduce__(self) -> tuple:  # so that even this one pickles (it never needs to)
        return (RemoteFailure, (self.failure,))
