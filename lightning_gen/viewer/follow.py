"""``lightning-gen show --follow``: watch a run that is training, one block per round as the rounds are written.

Like ``tail -f``: the last round there is, then each new one as it lands in the records, until Ctrl-C. A round
is shown once its file has stopped changing for one interval (the monitor writes a round's prompts one line at
a time), so a block is never half a round. A LOGDIR with no samples yet is waited on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from rich.console import Console

from lightning_gen.text.visible import one_line
from lightning_gen.viewer._errors import CliError, existing_logdir
from lightning_gen.viewer._terminal import Row, heading, render, samples_table
from lightning_gen.viewer.runs import Record, eos_text, load_records

__all__ = ["follow", "render_round"]

_PROMPT_CELLS = 14  # of the prompt, as the key of its row: the completion keeps the room (82 of 100 columns)


def render_round(records: Sequence[Record], previous: Sequence[Record], *, width: int, diff: bool = False,
                 color: bool = False, wrap: bool = False, run_eos: str | None = None) -> str:
    """One round of one run: a heading, then a row per prompt (``prompt │ completion``), as `render_show`'s rows.

    ``previous`` is the round before (what ``diff`` compares with; empty for none).

    Example::

        >>> at = lambda step, text: Record("tb/version_0", "samples", 0, step, "Once upon", text)
        >>> print(render_round([at(50, " a time")], [at(0, " a")], width=40, diff=True))
        ━━ tb/version_0 · samples · step 50 ━━━━
           prompt │ same │ completion
        ──────────┼──────┼──────────────────────
        Once upon │  67% │  a{+ time+}
        <BLANKLINE>
    """
    first = records[0]
    before = {r.index: r for r in previous}
    rows = [Row(one_line(r.prompt, _PROMPT_CELLS), r, before.get(r.index)) for r in sorted(records, key=lambda r: r.index)]

    def draw(console: Console) -> None:
        console.print(heading(f"{first.run} · {first.tag} · step {first.step}", width, "━"))
        console.print(samples_table(rows, key_header="prompt", width=width, diff=diff, color=color, wrap=wrap,
                                    eos_text=run_eos))

    return render(width, color, draw)


def _stamp(logdir: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a run writes: each records or event file's size and modification time."""
    files = [logdir] if logdir.is_file() else [*logdir.rglob("samples.jsonl"), *logdir.rglob("events.out.tfevents.*")]
    stamps = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:  # removed between the listing and the stat
            continue
        stamps.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(stamps))


def follow(logdir: str | os.PathLike[str], *, tag: str, prompts: Sequence[int] | None, width: int, out: TextIO,
           diff: bool = False, color: bool = False, wrap: bool = False, interval: float = 2.0,
           rounds: int | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
    """Print the last round under ``logdir``, then every new round, until interrupted (or after ``rounds``).

    Raises:
        CliError: ``logdir`` does not exist (code 2).
    """
    root = existing_logdir(logdir)
    shown: set[tuple[str, int]] = set()
    started = waiting = False
    last_stamp = None
    while rounds is None or rounds > 0:
        stamp = _stamp(root)
        if stamp != last_stamp:  # being written: look again once it has settled for an interval
            first_look = last_stamp is None
            last_stamp = stamp
            if not first_look or not stamp:
                sleep(interval)
                continue
        try:
            records = load_records(root, tag)
        except CliError:
            if not waiting:
                out.write(f"lightning-gen: waiting for samples with tag {tag!r} under {str(logdir)!r} "
                          "(Ctrl-C to stop)\n")
                out.flush()
                waiting = True
            sleep(interval)
            continue
        if prompts is not None:
            records = [r for r in records if r.index in prompts]
        by_run: dict[str, dict[int, list[Record]]] = {}
        for r in records:
            by_run.setdefault(r.run, {}).setdefault(r.step, []).append(r)
        for run, steps in sorted(by_run.items()):
            order = sorted(steps)
            new = [s for s in order if (run, s) not in shown]
            if not started and len(new) > 1:  # tail's habit: the last round, and where the others are
                out.write(f"lightning-gen: {len(new) - 1} earlier round(s) of {run}: lightning-gen show "
                          f"{root / run if run != '.' else root}\n")
                shown.update((run, s) for s in new[:-1])
                new = new[-1:]
            run_eos = eos_text(r for at_step in steps.values() for r in at_step)
            for step in new:
                i = order.index(step)
                before = steps[order[i - 1]] if i else []
                out.write(render_round(steps[step], before, width=width, diff=diff, color=color, wrap=wrap,
                                       run_eos=run_eos))
                out.flush()
                shown.add((run, step))
                if rounds is not None and started:
                    rounds -= 1
        started = True
        sleep(interval)
