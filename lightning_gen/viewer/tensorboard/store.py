"""The records the dashboard serves: the runs under a logdir, each read again only when its file changed.

Pure Python over `lightning_gen.viewer.records` (no TensorBoard, no web framework), so the routes only parse a
request and answer with what these methods return.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_gen.viewer.records import Record, read_run, records_files

__all__ = ["RecordsStore"]


class RecordsStore:
    """The runs under ``logdir`` that hold a records file, and their records.

    Runs are the directories that hold a ``samples.jsonl``, named relative to ``logdir`` (``"."`` for the logdir
    itself). A run's file is parsed once and again only when its size or modification time changes, so a
    dashboard left open on a training run costs one ``stat`` per request.

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
    """

    def __init__(self, logdir: str | os.PathLike[str] | None) -> None:
        self.logdir = Path(logdir) if logdir else None
        self._lock = threading.Lock()  # TensorBoard answers requests on several threads
        self._cache: dict[Path, tuple[tuple[int, int], list[Record]]] = {}

    def _files(self) -> dict[str, Path]:
        if self.logdir is None or not self.logdir.is_dir():
            return {}
        return records_files(self.logdir)

    def has_records(self) -> bool:
        """Whether any run under the logdir has a records file (TensorBoard shows the tab only then)."""
        return bool(self._files())

    def runs(self) -> list[str]:
        """The runs, sorted."""
        return sorted(self._files())

    def records(self, run: str) -> list[Record]:
        """Every record of ``run``, sorted by tag, prompt and step.

        Raises:
            KeyError: ``run`` is not a run under the logdir (the message lists the runs there are).
        """
        path = self._files().get(run)
        if path is None:
            raise KeyError(f"`run` must be one of {self.runs()}, got {run!r}")
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(path)
            if cached is None or cached[0] != key:
                cached = self._cache[path] = (key, read_run(path, run))
        return cached[1]

    def tags(self, run: str) -> list[str]:
        """The tags of ``run``'s records (one per `GenerationMonitor`), sorted."""
        return sorted({r.tag for r in self.records(run)})

    def steps(self, run: str, tag: str) -> list[int]:
        """The sampled steps of ``run`` under ``tag``, in order."""
        return sorted({r.step for r in self.records(run) if r.tag == tag})

    def prompts(self, run: str, tag: str) -> list[dict[str, Any]]:
        """``run``'s prompts under ``tag``: index, prompt text and reference, as its last round had them."""
        last = {r.index: r for r in self.records(run) if r.tag == tag}
        return [{"index": i, "prompt": last[i].prompt, "reference": last[i].reference} for i in sorted(last)]

    def samples(
        self, runs: Sequence[str], tag: str, *, prompt: int | None = None, step: int | None = None
    ) -> list[dict[str, Any]]:
        """The records of ``runs`` under ``tag`` as JSON-ready dicts, of one prompt and/or one step (None: all).

        Raises:
            KeyError: One of ``runs`` is not a run under the logdir.
        """
        return [
            dataclasses.asdict(r)
            for run in runs
            for r in self.records(run)
            if r.tag == tag and (prompt is None or r.index == prompt) and (step is None or r.step == step)
        ]
