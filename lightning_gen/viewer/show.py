"""``lightning-gen show``: each prompt's completions step by step, as a table in the terminal.

One line per text by default, cut to the width with an ellipsis (``git log --oneline``'s habit: the history at a
glance), the completion given all the room the screen has: the greedy completion goes beside it only when both
get a line of prose (`_terminal.SIDE_BY_SIDE_CELLS` cells), else on a row of its own under it. ``wrap=True``
shows every character, wrapping long completions under their step.
"""

from __future__ import annotations

from rich.console import Console

from lightning_gen.text.visible import visible
from lightning_gen.viewer._terminal import Row, heading, labelled, render, samples_table
from lightning_gen.viewer.runs import Record, eos_text, group_records, group_title

__all__ = ["render_show"]


def _run_heading(run: str, groups: list[list[Record]], width: int) -> str:
    steps = sorted({r.step for g in groups if g[0].run == run for r in g})
    prompts = len({g[0].index for g in groups if g[0].run == run})
    title = f"run {run}: {prompts} prompt{'s' * (prompts != 1)}, {len(steps)} step{'s' * (len(steps) != 1)} "
    title += f"({steps[0]}–{steps[-1]})" if len(steps) > 1 else f"({steps[0]})"
    return heading(title, width, "━").plain


def render_show(records: list[Record], *, width: int, diff: bool = False, color: bool = False,
                wrap: bool = False) -> str:
    """The history table of every prompt: the prompt, then a row per step (``step │ completion``).

    Texts are made visible as everywhere (`lightning_gen.text.visible`): newlines as ⏎, tabs as ⇥, spaces that
    end a line as ·, an end of sequence as a badge (``⟨EOS⟩`` without colour). With ``diff``, what changed since
    the previous step: the greedy completions' words (the sampled ones' where there are none), red and struck
    through where deleted, green where added (``[-…-]{+…+}`` without colour), and the share of words kept. With
    several runs, each run's prompts come under a heading of their own.

    Example::

        >>> records = [Record(".", "samples", 0, s, "Hi", c) for s, c in ((0, " xq"), (10, " there\\nyou" * 9))]
        >>> print(render_show(records, width=40))
        ── samples/prompt_00 ───────────────────
        prompt: Hi
        step │ completion
        ─────┼──────────────────────────────────
           0 │  xq
          10 │  there⏎you there⏎you there⏎you t…
        <BLANKLINE>
    """
    groups = group_records(records)
    many_runs = len({r.run for r in records}) > 1
    prompts = 1 + max((r.index for r in records), default=0)
    run_eos = {run: eos_text(r for r in records if r.run == run) for run in {r.run for r in records}}

    def draw(console: Console) -> None:
        for number, group in enumerate(groups):
            run = group[0].run
            if many_runs and (number == 0 or groups[number - 1][0].run != run):
                console.print(_run_heading(run, groups, width))
            console.print(heading(group_title(group, many_runs, prompts), width))
            console.print(labelled("prompt: ", visible(group[0].prompt), color))
            if group[0].reference is not None:
                console.print(labelled("reference: ", visible(group[0].reference), color))
            rows = [Row(str(r.step), r, group[i - 1] if i else None) for i, r in enumerate(group)]
            console.print(samples_table(rows, key_header="step", width=width, diff=diff, color=color, wrap=wrap,
                                        eos_text=run_eos[run]))
            console.print()

    return render(width, color, draw)
