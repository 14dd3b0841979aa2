"""How an evaluation is written down for later: the records file, one task's record per step, and what flipped.

The evaluation writes these and a viewer reads them back, so both take them from here. Pure Python. A record
holds a task's metrics at one step and, per example, whether it was answered right, so that two steps can be
compared example by example (`flips`): which questions the model learned, which it forgot.

A record, one JSON object per line of `TASK_RECORDS_FILE`::

    {"step": 200, "task": "next_sentence", "type": "multiple_choice",
     "metrics": {"acc": 0.41, "acc_norm": 0.44, "centered": 0.21},
     "examples": [{"index": 0, "correct": true, "prediction": 2, "gold": 2, "correct_norm": true,
                   "loglikelihoods": [-41.2, -39.8, -35.1, -44.0]}, ...]}

For a ``language_modeling`` task an example has ``correct`` (greedy decoding gives the continuation) and its
``loglikelihoods`` (one); for ``bits_per_byte`` the entries are the task's documents, ``{"index", "name",
"bits_per_byte"}``, instead of examples. Non-finite numbers are written as null, so every line is strict JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["TASK_RECORDS_FILE", "document_result", "example_result", "flips", "task_record"]

#: The JSON Lines file of a run's evaluations, one object per task per step, in the run's log directory.
TASK_RECORDS_FILE = "evaluations.jsonl"


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def example_result(
    index: int,
    *,
    correct: bool,
    loglikelihoods: Sequence[float],
    prediction: int | None = None,
    gold: int | None = None,
    correct_norm: bool | None = None,
) -> dict[str, Any]:
    """One example's outcome at one step: whether it was right, what was picked, and the log-likelihoods.

    Example::

        >>> example_result(3, correct=False, loglikelihoods=[-2.0, -1.0], prediction=1, gold=0, correct_norm=True)
        ... # doctest: +NORMALIZE_WHITESPACE
        {'index': 3, 'correct': False, 'prediction': 1, 'gold': 0, 'correct_norm': True,
         'loglikelihoods': [-2.0, -1.0]}
    """
    return {"index": int(index), "correct": bool(correct), "prediction": prediction, "gold": gold,
            "correct_norm": correct_norm, "loglikelihoods": [_number(v) for v in loglikelihoods]}


def document_result(index: int, name: str, bits_per_byte: float) -> dict[str, Any]:
    """One held-out document's bits per byte at one step.

    Example::

        >>> document_result(0, "intro.txt", 2.5)
        {'index': 0, 'name': 'intro.txt', 'bits_per_byte': 2.5}
    """
    return {"index": int(index), "name": name, "bits_per_byte": _number(bits_per_byte)}


def task_record(
    step: int, task: str, task_type: str, metrics: Mapping[str, float], examples: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """A task's evaluation at one step as one JSON-ready dict, the schema of the records file.

    Example::

        >>> task_record(5, "arc", "multiple_choice", {"acc": 1.0}, [example_result(0, correct=True,
        ...             loglikelihoods=[-1.0])])["examples"][0]["correct"]
        True
    """
    return {"step": int(step), "task": task, "type": task_type,
            "metrics": {name: _number(value) for name, value in metrics.items()}, "examples": list(examples)}


def flips(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[int]]:
    """The examples answered right at one step and wrong at the other, between two records of one task.

    Returns:
        ``{"learned": [...], "forgotten": [...]}``: indices right only in ``after``, and right only in ``before``.
        Examples found in only one of the records are left out.

    Raises:
        ValueError: The records are of different tasks.

    Example::

        >>> a = task_record(1, "t", "schema", {}, [example_result(i, correct=c, loglikelihoods=[])
        ...                                         for i, c in enumerate([True, False, False])])
        >>> b = task_record(2, "t", "schema", {}, [example_result(i, correct=c, loglikelihoods=[])
        ...                                         for i, c in enumerate([False, True, False])])
        >>> flips(a, b)
        {'learned': [1], 'forgotten': [0]}
    """
    if before.get("task") != after.get("task"):
        raise ValueError(f"`before` and `after` must be records of one task, got {before.get('task')!r} and "
                         f"{after.get('task')!r}")
    old = {entry["index"]: entry.get("correct") for entry in before.get("examples", [])}
    new = {entry["index"]: entry.get("correct") for entry in after.get("examples", [])}
    shared = sorted(old.keys() & new.keys())
    return {"learned": [i for i in shared if new[i] and not old[i]],
            "forgotten": [i for i in shared if old[i] and not new[i]]}
