"""Argument checks shared by every layer: one wording for each constraint, naming the argument and the value.

Pure Python (no torch, no Lightning), so any layer may import it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_bool", "check_int", "is_int"]


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool`` (``True`` is an int to Python, never a count to a user)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, low: int = 1, allow_none: bool = False) -> None:
    """Raise unless ``value`` is an integer >= ``low`` (or None, when allowed).

    Raises:
        TypeError: ``value`` is not an integer (``"5"`` from a config file, ``1.5``, ``True``), naming the argument.
        ValueError: ``value`` is an integer below ``low``, naming the argument, the constraint and the value.

    Example::

        >>> check_int("batch_size", 0, allow_none=True)
        Traceback (most recent call last):
        ...
        ValueError: `batch_size` must be a positive integer or None, got 0
        >>> check_int("every_n_train_steps", "5")
        Traceback (most recent call last):
        ...
        TypeError: `every_n_train_steps` must be a positive integer, got '5' (str)
    """
    if value is None and allow_none:
        return
    constraint = ("a positive integer" if low == 1 else f"an integer >= {low}") + (" or None" if allow_none else "")
    if not is_int(value):
        raise TypeError(f"`{name}` must be {constraint}, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"`{name}` must be {constraint}, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    """Raise unless ``value`` is a real ``bool`` (``"false"`` from a config file is truthy, so it is refused).

    Raises:
        TypeError: Naming the argument and the value.

    Example::

        >>> check_bool("do_sample", "false")
        Traceback (most recent call last):
        ...
        TypeError: `do_sample` must be a bool (True or False), got 'false' (str)
    """
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool (True or False), got {value!r} ({type(value).__name__})")
