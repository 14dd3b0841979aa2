"""A run's evaluations as the dashboard's page receives them: each task's metrics over steps, and the examples
that flipped between two steps with their texts already made visible (`shown.items` of
`lightning_gen.text.visible`, the rule the samples use).

A flipped example, as the page lays it out::

    {"index": 17, "gold": 2, "picks": {"old": 0, "new": 2}, "loglikelihoods": {"old": [...], "new": [...]},
     "question": items | null, "options": [items, ...] | null, "ending": items | null, "fewshot": false}

``options`` are what the model picks among: a multiple-choice task's choices, a schema task's contexts (then
``ending`` is the continuation they share), a language-modelling task's one continuation (no picks: it is right
when greedy decoding gives it). ``question`` is the context they follow, ``fewshot`` true where it still holds
its few-shot examples. Without a header (a run written before headers existed) the texts are null. Pure Python.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lightning_gen.text.visible import visible
from lightning_gen.viewer.evaluations import Evaluations
from lightning_gen.viewer.tensorboard.shown import items

__all__ = ["evaluations_json", "flips_json"]


def _shown(text: Any) -> list[Any] | None:
    return items(visible(text)) if isinstance(text, str) else None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def evaluations_json(evaluations: Evaluations) -> dict[str, Any]:
    """The evaluated steps, ``core`` at each, and per task its type, its number of examples, whether the run
    described them (a header) and its metrics at each step: what the page's curves draw.

    Example::

        >>> from lightning_gen.viewer.evaluations import Evaluations
        >>> run = Evaluations({"t": "schema"}, {"t": {5: {"metrics": {"acc": 1.0, "centered": 1.0},
        ...                                                     "examples": [{"index": 0, "correct": True}]}}})
        >>> evaluations_json(run)  # doctest: +NORMALIZE_WHITESPACE
        {'steps': [5], 'core': [{'step': 5, 'metrics': {'core': 1.0}}],
         'tasks': [{'task': 't', 'type': 'schema', 'examples': 1, 'described': False,
                    'points': [{'step': 5, 'metrics': {'acc': 1.0, 'centered': 1.0}}]}]}
    """
    tasks = []
    for task in evaluations.tasks:
        by_step = evaluations.records[task]
        last = by_step[max(by_step)]
        tasks.append({"task": task, "type": evaluations.types[task], "examples": len(last.get("examples") or []),
                      "described": task in evaluations.headers,
                      "points": [{"step": step, "metrics": dict(record.get("metrics") or {})}
                                 for step, record in sorted(by_step.items())]})
    return {"steps": evaluations.steps,
            "core": [{"step": step, "metrics": {"core": _finite(value)}} for step, value in evaluations.core().items()],
            "tasks": tasks}


def _texts(header: Mapping[str, Any] | None) -> dict[str, Any]:
    """A header entry's texts as the page lays them out: the question, the options picked among, the ending."""
    if header is None:
        return {"question": None, "options": None, "ending": None, "fewshot": False}
    if "choices" in header:  # multiple choice: one context, a continuation per choice
        question, options, ending = header.get("context"), header["choices"], None
    elif "contexts" in header:  # schema: a context per option, one continuation
        question, options, ending = None, header["contexts"], header.get("continuation")
    else:  # language modelling: one request
        question, options, ending = header.get("context"), [header.get("continuation")], None
    return {"question": _shown(question), "options": [_shown(option) for option in options], "ending": _shown(ending),
            "fewshot": bool(header.get("fewshot_included"))}


def _example(index: int, before: Mapping[str, Any], after: Mapping[str, Any],
             header: Mapping[str, Any] | None) -> dict[str, Any]:
    gold = after.get("gold", before.get("gold"))
    if gold is None and header is not None:
        gold = header.get("gold")
    return {"index": index, "gold": gold,
            "picks": {"old": before.get("prediction"), "new": after.get("prediction")},
            "loglikelihoods": {"old": before.get("loglikelihoods"), "new": after.get("loglikelihoods")},
            **_texts(header)}


def _documents(before: Mapping[str, Any], after: Mapping[str, Any],
               header: Mapping[int, Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Each held-out document's bits per byte at both steps (a document does not flip: it gets better or worse)."""
    old = {entry["index"]: entry for entry in before.get("examples") or []}
    out = []
    for entry in after.get("examples") or []:
        name = entry.get("name") or (header or {}).get(entry["index"], {}).get("name")
        out.append({"index": entry["index"], "name": name, "old": old.get(entry["index"], {}).get("bits_per_byte"),
                    "new": entry.get("bits_per_byte")})
    return out


def flips_json(evaluations: Evaluations, old: int, new: int, task: str | None = None) -> list[dict[str, Any]]:
    """Per task (or only ``task``), the examples learned (wrong at ``old``, right at ``new``) and forgotten (right,
    then wrong), each with its texts made visible, the model's pick at both steps and the gold; for a
    ``bits_per_byte`` task, its documents at both steps. ``missing`` names a step the task has no record at.

    Raises:
        KeyError: ``task`` is not one of the run's tasks (the message lists them).
    """
    if task is not None and task not in evaluations.records:
        raise KeyError(f"`task` must be one of {evaluations.tasks}, got {task!r}")
    out = []
    for name in [task] if task is not None else evaluations.tasks:
        by_step, header = evaluations.records[name], evaluations.headers.get(name)
        entry: dict[str, Any] = {"task": name, "type": evaluations.types[name], "old": old, "new": new,
                                 "described": header is not None, "missing": None, "learned": [], "forgotten": [],
                                 "documents": None}
        absent = [step for step in (old, new) if step not in by_step]
        if absent:
            entry["missing"] = f"no evaluation of {name} at step {absent[0]}"
            out.append(entry)
            continue
        before, after = by_step[old], by_step[new]
        if evaluations.types[name] == "bits_per_byte":
            entry["documents"] = _documents(before, after, header)
        else:
            results = [{e["index"]: e for e in record.get("examples") or []} for record in (before, after)]
            for kind, indices in (evaluations.flips(name, old, new) or {}).items():
                entry[kind] = [_example(i, results[0][i], results[1][i], (header or {}).get(i)) for i in indices]
        out.append(entry)
    return out
