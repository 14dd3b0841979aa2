"""``lightning-gen show --evaluations``: what `TaskMonitor` measured, a short table per task.

Per run, ``core`` and then each task: a row per evaluated step with the task's metrics and how many of its examples
it learned and forgot since the step above (`lightning_gen.text.task_records.flips`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console
from rich.table import Table

from lightning_gen.text.task_records import TASK_RECORDS_FILE
from lightning_gen.viewer._errors import CliError, existing_logdir
from lightning_gen.viewer._terminal import heading, render
from lightning_gen.viewer.evaluations import Evaluations, evaluation_files, read_evaluations

__all__ = ["load_evaluations", "render_evaluations"]


def load_evaluations(logdir: str | os.PathLike[str]) -> dict[str, Evaluations]:
    """Every run's evaluations under ``logdir``: a directory, searched recursively, or a file of a run's (its
    ``evaluations.jsonl``, or its ``samples.jsonl``, beside which it looks).

    Raises:
        CliError: ``logdir`` does not exist (code 2); no run under it has evaluations (code 1).
    """
    root = existing_logdir(logdir)
    if root.is_file():
        path = root if root.name == TASK_RECORDS_FILE else root.parent / TASK_RECORDS_FILE
        files = {".": path} if path.is_file() else {}
    else:
        files = evaluation_files(root)
    runs = {run: evaluations for run, path in files.items() if (evaluations := read_evaluations(path)).steps}
    if not runs:
        raise CliError(f"no evaluations under {str(logdir)!r} (no {TASK_RECORDS_FILE}: a TaskMonitor writes one)")
    return runs


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "n/a"


def _table(evaluations: Evaluations, task: str, steps: list[int]) -> Table:
    by_step = evaluations.records[task]
    shown = [step for step in steps if step in by_step]
    names = list(dict.fromkeys(name for step in shown for name in by_step[step].get("metrics") or {}))
    flips = evaluations.types[task] != "bits_per_byte"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("step", justify="right")
    for name in names + (["learned", "forgotten"] if flips else []):
        table.add_column(name, justify="right")
    for before, step in zip([None, *shown], shown):
        metrics = by_step[step].get("metrics") or {}
        row = [str(step), *(_number(metrics.get(name)) for name in names)]
        if flips:
            changed = evaluations.flips(task, before, step) if before is not None else None
            row += [f"+{len(changed['learned'])}", f"−{len(changed['forgotten'])}"] if changed else ["", ""]
        table.add_row(*row)
    return table


def render_evaluations(runs: Mapping[str, Evaluations], *, width: int, steps: Sequence[int] | None = None) -> str:
    """Each run's ``core`` and tasks, a table each (``steps``: only these; learned and forgotten count from the
    row above).

    Example::

        >>> from lightning_gen.text.task_records import example_result, task_record
        >>> run = Evaluations({"t": "schema"}, {"t": {s: task_record(s, "t", "schema", {"acc": a}, [
        ...     example_result(i, correct=c, loglikelihoods=[]) for i, c in enumerate(right)])
        ...     for s, a, right in ((0, 0.5, [True, False]), (100, 0.5, [False, True]))}})
        >>> print(render_evaluations({"tb": run}, width=40))
        ── run tb: 1 task, 2 steps (0–100) ─────
        <BLANKLINE>
        t (schema, 2 examples)
        step   acc   learned   forgotten
        ────────────────────────────────
           0   0.5
         100   0.5        +1          −1
        <BLANKLINE>
    """

    def draw(console: Console) -> None:
        for run, evaluations in runs.items():
            chosen = [s for s in evaluations.steps if steps is None or s in steps]
            count = len(evaluations.tasks)
            span = f"{chosen[0]}–{chosen[-1]}" if len(chosen) > 1 else ", ".join(map(str, chosen)) or "none shown"
            console.print(heading(f"run {run}: {count} task{'s' * (count != 1)}, {len(chosen)} step"
                                  f"{'s' * (len(chosen) != 1)} ({span})", width, "━" if len(runs) > 1 else "─"))
            core = evaluations.core()
            if any(step in core for step in chosen):
                console.print("\ncore (the mean centred accuracy)")
                table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
                table.add_column("step", justify="right")
                table.add_column("core", justify="right")
                for step in (s for s in chosen if s in core):
                    table.add_row(str(step), _number(core[step]))
                console.print(table)
            for task in evaluations.tasks:
                last = evaluations.records[task][max(evaluations.records[task])]
                items = len(last.get("examples") or [])
                kind = evaluations.types[task]
                noun = "document" if kind == "bits_per_byte" else "example"
                console.print(f"\n{task} ({kind.replace('_', ' ')}, {items} {noun}{'s' * (items != 1)})")
                console.print(_table(evaluations, task, chosen))

    return render(width, False, draw)
