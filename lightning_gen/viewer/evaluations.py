"""Read back what `TaskMonitor` wrote: a run's ``evaluations.jsonl`` and the headers that say what each example is.

The records file holds a record per task per step (`lightning_gen.text.task_records`); the examples file beside it,
a header per task. A run written before headers existed has none: its examples are known by index only. A run
resumed into the same directory may log a step again, or its headers: the last line read wins, as for samples.
A torn last line (a run killed mid-write) is skipped with a warning; the rest is read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_gen.evaluation.metrics import core
from lightning_gen.text.task_records import TASK_EXAMPLES_FILE, TASK_RECORDS_FILE, flips
from lightning_gen.viewer.runs import json_lines, records_files

__all__ = ["Evaluations", "evaluation_files", "read_evaluations"]


def _lines(path: Path, needed: tuple[str, ...]) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file that have the ``needed`` fields (none where there is no file)."""

    def parse(obj: dict[str, Any]) -> dict[str, Any]:
        missing = [name for name in needed if name not in obj]
        if missing:
            raise KeyError(", ".join(missing))
        return obj

    return json_lines(path, parse, f"a line of {path.name}") if path.is_file() else []


@dataclass(frozen=True)
class Evaluations:
    """One run's evaluations: per task its records by step, and its header where the run wrote one.

    Attributes:
        types: Per task, its type (``multiple_choice``, ``schema``, ``language_modeling``, ``bits_per_byte``).
        records: Per task, its record at each evaluated step.
        headers: Per task with a header, what each of its examples is, by index.
    """

    types: dict[str, str] = field(default_factory=dict)
    records: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    headers: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        """The tasks' names, in the order the run first wrote them."""
        return list(self.records)

    @property
    def steps(self) -> list[int]:
        """Every evaluated step, in order."""
        return sorted({step for by_step in self.records.values() for step in by_step})

    def core(self) -> dict[int, float]:
        """``core`` at each step, as `TaskMonitor` logs it: the mean centred accuracy of the tasks that have one
        (`lightning_gen.evaluation.metrics.core`); steps where none has one are left out."""
        out = {}
        for step in self.steps:
            centred = [record["metrics"]["centered"] for record in (self.records[t].get(step) for t in self.tasks)
                       if record is not None and "centered" in (record.get("metrics") or {})]
            if centred:
                out[step] = core([math.nan if value is None else float(value) for value in centred])
        return out

    def flips(self, task: str, old: int, new: int) -> dict[str, list[int]] | None:
        """The indices of ``task``'s examples learned and forgotten from step ``old`` to ``new`` (see
        `lightning_gen.text.task_records.flips`); None where the task has no record at one of them."""
        before, after = self.records.get(task, {}).get(old), self.records.get(task, {}).get(new)
        return None if before is None or after is None else flips(before, after)


def evaluation_files(logdir: str | os.PathLike[str]) -> dict[str, Path]:
    """Every run under ``logdir`` that has an evaluations file: run → file (`records_files` of
    ``evaluations.jsonl``).

    Example::

        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()); (root / "a").mkdir()
        >>> _ = (root / "a" / TASK_RECORDS_FILE).write_text("")
        >>> {run: path.name for run, path in evaluation_files(root).items()}
        {'a': 'evaluations.jsonl'}
    """
    return records_files(logdir, TASK_RECORDS_FILE)


def read_evaluations(path: str | os.PathLike[str]) -> Evaluations:
    """A run's evaluations from its ``evaluations.jsonl`` (``path``) and, where there is one, the examples file
    beside it.

    Example::

        >>> import json, tempfile
        >>> from lightning_gen.text.task_records import example_result, task_record
        >>> run = Path(tempfile.mkdtemp())
        >>> lines = [task_record(s, "t", "schema", {"acc": a, "centered": 2 * a - 1},
        ...                      [example_result(0, correct=bool(a), loglikelihoods=[])]) for s, a in ((0, 0), (9, 1))]
        >>> _ = (run / TASK_RECORDS_FILE).write_text("".join(json.dumps(line) + "\\n" for line in lines))
        >>> evaluations = read_evaluations(run / TASK_RECORDS_FILE)
        >>> evaluations.steps, evaluations.core(), evaluations.flips("t", 0, 9), evaluations.headers
        ([0, 9], {0: -1.0, 9: 1.0}, {'learned': [0], 'forgotten': []}, {})
    """
    path = Path(path)
    out = Evaluations()
    for record in _lines(path, ("step", "task")):
        task = str(record["task"])
        out.records.setdefault(task, {})
        out.types[task] = str(record.get("type", ""))
        out.records[task][int(record["step"])] = record
    for header in _lines(path.parent / TASK_EXAMPLES_FILE, ("task", "examples")):
        out.headers[str(header["task"])] = {int(entry["index"]): entry for entry in header["examples"]
                                            if isinstance(entry, Mapping) and "index" in entry}
    return out
