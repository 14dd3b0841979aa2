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

A record can only say "example 17 flipped"; what example 17 *is* goes once per run into `TASK_EXAMPLES_FILE`
beside it, a header per task, so that a viewer can show the question, the choices, the model's pick and the gold.
Apart from the records, so that the records file stays one object per task per step; a run written before the
headers existed has none, and its examples are shown by index. A header, one JSON object per line::

    {"task": "next_sentence", "type": "multiple_choice", "num_fewshot": 0,
     "examples": [{"index": 0, "context": "The optional argument defaults to -1, so that",
                   "choices": [" the last item is removed.", " it is returned unchanged."], "gold": 0}, ...]}

The context is what the model sees before the continuation, without the few-shot prefix (runs written before
that knew the prefix may hold the whole context, with ``"fewshot_included": true``); the continuations are as
scored, the delimiter included. Per type: ``multiple_choice`` ``{"index", "context", "choices", "gold"}`` (a
record's ``prediction`` indexes ``choices``); ``schema`` ``{"index", "contexts", "continuation", "gold"}``
(``prediction`` indexes ``contexts``); ``language_modeling`` ``{"index", "context", "continuation"}``;
``bits_per_byte`` ``{"index", "name"}``, a document. A run resumed into the same directory writes its headers
again: the last one of a task is the one in force. For example::

    >>> shot, question = "Q: sky? A: blue\\n\\n", "Q: grass? A:"
    >>> header = task_header("colors", "multiple_choice", [
    ...     example_header(0, [(shot + question, " green"), (shot + question, " red")], task_type="multiple_choice",
    ...                    gold=0, fewshot=shot)], num_fewshot=1)
    >>> header["examples"]
    [{'index': 0, 'context': 'Q: grass? A:', 'choices': [' green', ' red'], 'gold': 0}]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "TASK_EXAMPLES_FILE",
    "TASK_RECORDS_FILE",
    "document_header",
    "document_result",
    "example_header",
    "example_result",
    "flips",
    "task_header",
    "task_record",
]

#: The JSON Lines file of a run's evaluations, one object per task per step, in the run's log directory.
TASK_RECORDS_FILE = "evaluations.jsonl"
#: The JSON Lines file of the tasks' examples (their texts), a header per task, written once per run beside it.
TASK_EXAMPLES_FILE = "evaluation_examples.jsonl"


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


# ----------------------------------------------------------------- the headers: what each example is
def example_header(
    index: int,
    requests: Sequence[tuple[str, str]],
    *,
    task_type: str,
    gold: int = 0,
    fewshot: str = "",
) -> dict[str, Any]:
    """What one example is, for a viewer: its question and its choices, from its ``(context, continuation)``
    requests as the model sees them, the few-shot prefix taken off the contexts.

    Args:
        task_type: ``multiple_choice`` (one context, a continuation per choice), ``schema`` (a context per option,
            one continuation) or ``language_modeling`` (one request).
        fewshot: The few-shot prefix every context starts with (`~lightning_gen.evaluation.formats.Example`'s).

    Raises:
        ValueError: ``task_type`` is none of those, ``requests`` do not have its shape, or a context does not start
            with ``fewshot``.

    Example::

        >>> example_header(4, [("The cat", " sat."), ("A dog", " sat.")], task_type="schema", gold=1)
        {'index': 4, 'contexts': ['The cat', 'A dog'], 'continuation': ' sat.', 'gold': 1}
        >>> example_header(2, [("1, 2, 3,", " 4")], task_type="language_modeling")
        {'index': 2, 'context': '1, 2, 3,', 'continuation': ' 4'}
    """
    if not requests:
        raise ValueError(f"`requests` of example {index} must hold at least one request, got none")
    if not all(context.startswith(fewshot) for context, _ in requests):
        raise ValueError(f"every context of example {index} must start with its `fewshot` prefix {fewshot!r}")
    contexts = [context[len(fewshot):] for context, _ in requests]
    continuations = [continuation for _, continuation in requests]
    entry: dict[str, Any] = {"index": int(index)}
    if task_type == "multiple_choice" and len(set(contexts)) == 1:
        entry |= {"context": contexts[0], "choices": continuations, "gold": int(gold)}
    elif task_type == "schema" and len(set(continuations)) == 1:
        entry |= {"contexts": contexts, "continuation": continuations[0], "gold": int(gold)}
    elif task_type == "language_modeling" and len(requests) == 1:
        entry |= {"context": contexts[0], "continuation": continuations[0]}
    else:
        raise ValueError(f"`task_type` must be multiple_choice (one context), schema (one continuation) or "
                         f"language_modeling (one request) for requests of that shape, got {task_type!r} for "
                         f"{len(requests)} request(s) of example {index}")
    return entry


def document_header(index: int, name: str) -> dict[str, Any]:
    """What one held-out document of a ``bits_per_byte`` task is: its name (its file, relative to the task's path).

    Example::

        >>> document_header(0, "intro.txt")
        {'index': 0, 'name': 'intro.txt'}
    """
    return {"index": int(index), "name": name}


def task_header(
    task: str, task_type: str, examples: Sequence[Mapping[str, Any]], *, num_fewshot: int = 0
) -> dict[str, Any]:
    """A task's header, the schema of `TASK_EXAMPLES_FILE`: its name, type and what each example is.

    Example::

        >>> task_header("docs", "bits_per_byte", [document_header(0, "a.txt")])
        {'task': 'docs', 'type': 'bits_per_byte', 'num_fewshot': 0, 'examples': [{'index': 0, 'name': 'a.txt'}]}
    """
    return {"task": task, "type": task_type, "num_fewshot": int(num_fewshot), "examples": list(examples)}
