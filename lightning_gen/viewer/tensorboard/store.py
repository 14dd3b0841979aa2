"""The records the dashboard serves: the runs under a logdir, each read again only when its files changed.

Pure Python over `lightning_gen.viewer.runs` and `lightning_gen.viewer.evaluations` (no TensorBoard, no web
framework), so the routes only parse a request and answer with what these methods return.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_gen.text.records import RECORDS_FILE
from lightning_gen.text.task_records import TASK_EXAMPLES_FILE, TASK_RECORDS_FILE
from lightning_gen.viewer.evaluations import Evaluations, read_evaluations
from lightning_gen.viewer.runs import Record, eos_text, read_run, records_files
from lightning_gen.viewer.tensorboard.shown import compare_json, prompt_json, record_json
from lightning_gen.viewer.tensorboard.shown_tasks import evaluations_json, flips_json

__all__ = ["RecordsStore"]


class RecordsStore:
    """The runs under ``logdir`` that hold a records file, and their records.

    Runs are the directories that hold a ``samples.jsonl`` (`GenerationMonitor`'s) or an ``evaluations.jsonl``
    (`TaskMonitor`'s), named relative to ``logdir`` (``"."`` for the logdir itself). A run's files are parsed once
    and again only when their size or modification time changes, so a dashboard left open on a training run costs
    a ``stat`` or two per request.

    Example::

        >>> import json, tempfile
        >>> from lightning_gen.text.records import RECORDS_FILE, sample_record
        >>> from lightning_gen.text.samples import Sample
        >>> root = Path(tempfile.mkdtemp()); (root / "run").mkdir()
        >>> lines = [sample_record(step, 0, Sample("Hi", " there", [1], [2]), tag="samples") for step in (0, 5)]
        >>> _ = (root / "run" / RECORDS_FILE).write_text("".join(json.dumps(line) + "\\n" for line in lines))
        >>> store = RecordsStore(root)
        >>> store.runs(), store.tags("run"), store.steps("run", "samples")
        (['run'], ['samples'], [0, 5])
        >>> store.samples(["run"], "samples", step=5)[0]["completion"]
        ' there'
        >>> [r["step"] for r in store.samples(["run"], "samples", step=4, nearest=True)]
        [5]
    """

    def __init__(self, logdir: str | os.PathLike[str] | None) -> None:
        self.logdir = Path(logdir) if logdir else None
        self._lock = threading.Lock()  # TensorBoard answers requests on several threads
        self._cache: dict[Path, tuple[tuple[int, int], list[Record], str | None]] = {}
        self._evaluations: dict[Path, tuple[tuple[tuple[int, int], ...], Evaluations]] = {}

    def _files(self, name: str = RECORDS_FILE) -> dict[str, Path]:
        """The runs' records files called ``name`` (the samples', or ``TASK_RECORDS_FILE``)."""
        if self.logdir is None or not self.logdir.is_dir():
            return {}
        return records_files(self.logdir, name)

    def has_records(self) -> bool:
        """Whether any run under the logdir has a records file (TensorBoard shows the tab only then)."""
        return bool(self._files()) or bool(self._files(TASK_RECORDS_FILE))

    def runs(self) -> list[str]:
        """The runs, sorted: those with samples, those with evaluations."""
        return sorted(self._files().keys() | self._files(TASK_RECORDS_FILE).keys())

    def _check(self, run: str) -> None:
        runs = self.runs()
        if run not in runs:
            raise KeyError(f"`run` must be one of {runs}, got {run!r}")

    def _read(self, run: str) -> tuple[list[Record], str | None]:
        """``run``'s records and the text of its end-of-sequence token (see `eos_text`), read once per change;
        none for a run with evaluations only."""
        path = self._files().get(run)
        if path is None:
            self._check(run)
            return [], None
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(path)
            if cached is None or cached[0] != key:
                records = read_run(path, run)
                cached = self._cache[path] = (key, records, eos_text(records))
        return cached[1], cached[2]

    def _read_evaluations(self, run: str) -> Evaluations:
        """``run``'s evaluations and headers, read once per change of either file; none for a run without them."""
        path = self._files(TASK_RECORDS_FILE).get(run)
        if path is None:
            self._check(run)
            return Evaluations()
        key = tuple((s.st_mtime_ns, s.st_size) if (s := _stat(f)) else (0, -1)
                    for f in (path, path.parent / TASK_EXAMPLES_FILE))
        with self._lock:
            cached = self._evaluations.get(path)
            if cached is None or cached[0] != key:
                cached = self._evaluations[path] = (key, read_evaluations(path))
        return cached[1]

    def records(self, run: str) -> list[Record]:
        """Every record of ``run``, sorted by tag, prompt and step.

        Raises:
            KeyError: ``run`` is not a run under the logdir (the message lists the runs there are).
        """
        return self._read(run)[0]

    def tags(self, run: str) -> list[str]:
        """The tags of ``run``'s records (one per `GenerationMonitor`), sorted."""
        return sorted({r.tag for r in self.records(run)})

    def steps(self, run: str, tag: str) -> list[int]:
        """The sampled steps of ``run`` under ``tag``, in order."""
        return sorted({r.step for r in self.records(run) if r.tag == tag})

    def _last_prompts(self, run: str, tag: str) -> list[Record]:
        last = {r.index: r for r in self.records(run) if r.tag == tag}
        return [last[i] for i in sorted(last)]

    def prompts(self, run: str, tag: str) -> list[dict[str, Any]]:
        """``run``'s prompts under ``tag``: index, prompt text and reference (and both made visible, ``shown``),
        as its last round had them."""
        return [prompt_json(r) for r in self._last_prompts(run, tag)]

    def samples(
        self, runs: Sequence[str], tag: str, *, prompt: int | None = None, step: int | None = None,
        nearest: bool = False, tokens: bool = False,
    ) -> list[dict[str, Any]]:
        """The records of ``runs`` under ``tag`` as JSON-ready dicts with their texts made visible (``shown``, see
        `shown`), of one prompt and/or one step (None: all).

        With ``nearest``, each run's records at its sampled step nearest to ``step`` (the earlier of two as near):
        runs sampled on other schedules are compared at matching points. With ``tokens``, each completion token by
        token too (for the per-token log-prob view).

        Raises:
            KeyError: One of ``runs`` is not a run under the logdir.
        """
        out = []
        for run in runs:
            records, run_eos = self._read(run)
            at = step
            if nearest and step is not None:
                steps = self.steps(run, tag)
                at = min(steps, key=lambda s: (abs(s - step), s)) if steps else None
            out += [record_json(r, run_eos, tokens=tokens) for r in records
                    if r.tag == tag and (prompt is None or r.index == prompt) and (at is None or r.step == at)]
        return out

    def compare(self, run: str, tag: str, old: int, new: int) -> list[dict[str, Any]]:
        """Every prompt of ``run`` at steps ``old`` and ``new``: the greedy completions diffed side by side (the
        sampled ones in a run without greedy ones), and the share of words kept (see `shown.compare_json`).

        Raises:
            KeyError: ``run`` is not a run under the logdir.
        """
        records, run_eos = self._read(run)
        at = {step: {r.index: r for r in records if r.tag == tag and r.step == step} for step in (old, new)}
        return compare_json(self._last_prompts(run, tag), at[old], at[new], run_eos)

    def evaluations(self, run: str) -> dict[str, Any]:
        """``run``'s evaluations (`TaskMonitor`'s): the evaluated steps, ``core`` and each task's metrics at each
        step (see `shown_tasks.evaluations_json`); no step and no task for a run without an ``evaluations.jsonl``.

        Raises:
            KeyError: ``run`` is not a run under the logdir.
        """
        return evaluations_json(self._read_evaluations(run))

    def flips(self, run: str, old: int, new: int, task: str | None = None) -> list[dict[str, Any]]:
        """Per task of ``run`` (or only ``task``), the examples learned and forgotten from step ``old`` to ``new``,
        their texts made visible (see `shown_tasks.flips_json`).

        Raises:
            KeyError: ``run`` is not a run under the logdir, or ``task`` not one of its tasks.
        """
        return flips_json(self._read_evaluations(run), old, new, task)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None
