"""The terminal's building blocks, on `rich`: sample text as styled `Text`, and the table of samples both
``lightning-gen show`` (a prompt's steps) and ``show --follow`` (a round's prompts) print.

Text is made visible by `lightning_gen.text.visible` and diffed by `lightning_gen.text.diff`; this module only
styles the pieces: marks dim, deleted words red and struck through, added words green, the end of sequence a
reverse-video badge like the dashboard's. Without colour the same pieces read as plain text: ``⟨EOS⟩``, and
git's ``[-deleted-]{+added+}`` marks.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from lightning_gen.text.diff import Op, inline_diff, similarity
from lightning_gen.text.visible import EOS_PLAIN, Piece, plain, shown_completion
from lightning_gen.viewer.runs import Record, split_text

__all__ = ["Row", "heading", "labelled", "render", "samples_table", "styled"]

#: Each text column of a side-by-side table gets at least this many cells, or the greedy text goes under the
#: sampled one: a completion cut to less than a line of prose shows too little of what the model wrote.
SIDE_BY_SIDE_CELLS = 80
_DIFF_STYLES = {"del": "red strike", "add": "bold green"}
_DIFF_MARKS = {"del": ("[-", "-]"), "add": ("{+", "+}")}


def render(width: int, color: bool, draw: Callable[[Console], None]) -> str:
    """What ``draw`` prints on a console of ``width`` columns (ANSI colours only if ``color``), lines right-stripped,
    ending with one newline."""
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=color, color_system="standard" if color else None,
                      no_color=False, highlight=False, markup=False, emoji=False, legacy_windows=False,
                      soft_wrap=False)
    draw(console)
    return "\n".join(line.rstrip(" ") for line in out.getvalue().split("\n")).rstrip("\n") + "\n"


def styled(pieces: Iterable[tuple[Piece, Op]], color: bool) -> Text:
    """Pieces (with their diff operations) as one `Text`.

    Example::

        >>> from lightning_gen.text.diff import inline_diff
        >>> styled(inline_diff("a cat", "a dog"), color=False).plain
        'a [-cat-]{+dog+}'
    """
    text = Text()
    run: list[tuple[Piece, Op]] = []

    def flush() -> None:
        if not run:
            return
        op = run[0][1]
        if op and not color:
            text.append(_DIFF_MARKS[op][0])
        for piece, _ in run:
            if piece.mark == "eos":
                text.append(piece.text if color else EOS_PLAIN, style="reverse" if color else "")
            else:
                text.append(piece.text, style="dim" if piece.mark and color else "")
        if op:
            if color:
                text.stylize(_DIFF_STYLES[op], len(text) - sum(len(p.text) for p, _ in run))
            else:
                text.append(_DIFF_MARKS[op][1])
        run.clear()

    for piece, op in pieces:
        if run and run[0][1] != op:
            flush()
        run.append((piece, op))
    flush()
    return text


def heading(title: str, width: int, rule: str = "─") -> Text:
    """``── title ────`` across ``width`` cells."""
    head = f"{rule * 2} {title} "
    return Text(head + rule * max(0, width - cell_len(head)))


def labelled(label: str, pieces: Sequence[Piece], color: bool) -> RenderableType:
    """``label: text``, the text wrapped under itself (a hanging indent)."""
    grid = Table.grid()
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")
    grid.add_row(label, styled(((p, "") for p in pieces), color))
    return grid


@dataclass(frozen=True)
class Row:
    """One row of a samples table: its key (a step, a prompt), the record, and the one it is compared with."""

    key: str
    record: Record
    previous: Record | None = None


def _texts(row: Row, field: str, eos_text: str | None, diff: bool) -> tuple[list[tuple[Piece, Op]], float | None]:
    """The row's ``field`` (completion or greedy) as pieces, diffed against the previous record when asked, and
    how similar the two are (None: not compared)."""
    new = split_text(row.record, field, eos_text)
    if new is None:
        return [], None
    old = split_text(row.previous, field, eos_text) if diff and row.previous is not None else None
    if old is None:
        return [(p, "") for p in shown_completion(*new)], None
    return inline_diff(old[0], new[0], old_eos=old[1], new_eos=new[1]), similarity(old[0], new[0])


def samples_table(rows: Sequence[Row], *, key_header: str, width: int, diff: bool, color: bool, wrap: bool,
                  eos_text: str | None) -> Table:
    """The rows as a table ``key │ completion [│ greedy]``, or with the greedy text on a row of its own under the
    sampled one (keyed ``greedy``) when the two do not both get `SIDE_BY_SIDE_CELLS` cells side by side.

    Each text is one line cut with an ellipsis, or wrapped with ``wrap``. With ``diff``, the greedy texts (the
    sampled ones where there are none: sampling noise hides what the model learned) are compared with the
    previous row's, wrapped whatever ``wrap`` says, and a ``same`` column gives the share of words kept.
    """
    has_greedy = any(r.record.greedy is not None for r in rows)
    diffed = "greedy" if has_greedy else "completion"
    cells = {f: [_texts(r, f, eos_text, diff and f == diffed) for r in rows] for f in ("completion", "greedy")}
    key_width = max(cell_len(key_header), *(cell_len(r.key) for r in rows), 6 if has_greedy else 0)
    same_width = 4 if diff else 0
    separators = 3 * (1 + (diff > 0))
    room = width - key_width - same_width - separators
    longest = max((cell_len(plain(p for p, _ in pieces)) for texts in cells.values() for pieces, _ in texts),
                  default=0)
    side_by_side = has_greedy and (room - 3) // 2 >= min(SIDE_BY_SIDE_CELLS, longest)

    table = Table(box=box.MINIMAL, show_edge=False, pad_edge=False, expand=True, header_style="")
    table.add_column(key_header, justify="right", no_wrap=True, min_width=key_width)
    if diff:
        table.add_column("same", justify="right", no_wrap=True, min_width=same_width)

    def text_column(name: str) -> None:
        table.add_column(name, ratio=1, no_wrap=not (wrap or diff), overflow="fold" if wrap or diff else "ellipsis")

    text_column("completion")
    if side_by_side:
        text_column("greedy")

    def cell(field: str, i: int) -> tuple[Text, str]:
        pieces, same = cells[field][i]
        text = styled(pieces, color)
        if not (wrap or (diff and field == diffed)):
            text.no_wrap, text.overflow = True, "ellipsis"
        else:
            text.overflow = "fold"
        return text, "" if same is None else f"{round(100 * same)}%"

    for i, row in enumerate(rows):
        sampled, sampled_same = cell("completion", i)
        greedy, greedy_same = cell("greedy", i) if row.record.greedy is not None else (Text(), "")
        if side_by_side:
            table.add_row(row.key, *([greedy_same or sampled_same] if diff else []), sampled, greedy)
            continue
        table.add_row(row.key, *([sampled_same] if diff else []), sampled)
        if row.record.greedy is not None:
            table.add_row(Text("greedy", style="dim" if color else ""), *([greedy_same] if diff else []), greedy)
    return table
