"""``lightning-gen show``: each prompt's completions step by step, as a table in the terminal.

One line per step by default, cut to the width with an ellipsis (``git log --oneline``'s habit: the history at a
glance); ``wrap=True`` shows every character, wrapping long completions under their step.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence

from lightning_gen.viewer.records import Record, group_records, group_title

__all__ = ["diff_segments", "render_show", "truncate_segments", "visible", "wrap_segments"]

_PIECES = re.compile(r"\s+|\w+|[^\w\s]")
_VISIBLE = {"\n": "⏎", "\t": "⇥"}
_COLORS = {"add": "\x1b[1;32m", "del": "\x1b[9;31m"}
_MARKS = {"add": ("{+", "+}"), "del": ("[-", "-]")}

Segment = tuple[str, str]  # (text, style): style "" plain, "add" new at this step, "del" gone since the last


def visible(text: str) -> str:
    """Text with newlines as ⏎, tabs as ⇥ and other control characters as their Unicode pictures (␛ ...).

    Example::

        >>> visible("a\\nb\\tc\\x1b")
        'a⏎b⇥c␛'
    """

    def picture(c: str) -> str:
        if c in _VISIBLE:
            return _VISIBLE[c]
        if unicodedata.category(c) == "Cc":  # an escape sequence from the model must not drive the terminal
            return chr(0x2400 + ord(c)) if ord(c) < 32 else "␡" if ord(c) == 127 else f"\\x{ord(c):02x}"
        return c

    return "".join(picture(c) for c in text)


def diff_segments(old: str, new: str) -> list[Segment]:
    """``new`` as segments marking what changed since ``old``, compared word by word (whitespace and
    punctuation are pieces of their own).

    Example::

        >>> diff_segments("the cat sat", "the dog sat")
        [('the ', ''), ('cat', 'del'), ('dog', 'add'), (' sat', '')]
    """
    a, b = _PIECES.findall(old), _PIECES.findall(new)
    out: list[Segment] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("".join(b[j1:j2]), ""))
            continue
        if i2 > i1:
            out.append(("".join(a[i1:i2]), "del"))
        if j2 > j1:
            out.append(("".join(b[j1:j2]), "add"))
    return out


def _cell_width(text: str) -> int:
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _append(line: list[Segment], text: str, style: str) -> None:
    if line and line[-1][1] == style:  # one run per style, so a colour is opened once, not once per word
        line[-1] = (line[-1][0] + text, style)
    else:
        line.append((text, style))


def wrap_segments(segments: Sequence[Segment], width: int) -> list[list[Segment]]:
    """Segments broken into lines of at most ``width`` cells.

    Lines break at whitespace where possible (the whitespace run on the break is dropped); a word longer than
    a line is split.

    Example::

        >>> wrap_segments([("one two ", ""), ("three", "add")], 8)
        [[('one two ', '')], [('three', 'add')]]
    """
    lines: list[list[Segment]] = [[]]
    used = 0
    for text, style in segments:
        for piece in _PIECES.findall(text) or [text]:
            size = _cell_width(piece)
            if used + size > width and used > 0:
                lines.append([])
                used = 0
                if piece.isspace():
                    continue
            while size > width:  # a single piece wider than a line
                cut, cells = 0, 0
                while cut < len(piece) and cells + _cell_width(piece[cut]) <= width - used:
                    cells += _cell_width(piece[cut])
                    cut += 1
                cut = max(cut, 1)
                _append(lines[-1], piece[:cut], style)
                lines.append([])
                piece, used = piece[cut:], 0
                size = _cell_width(piece)
            if piece:
                _append(lines[-1], piece, style)
                used += size
    return lines


def truncate_segments(segments: Sequence[Segment], width: int) -> list[Segment]:
    """Segments cut to at most ``width`` cells; when something is cut, the last cell is an ellipsis.

    Example::

        >>> truncate_segments([("one two ", ""), ("three", "add")], 10)
        [('one two ', ''), ('t', 'add'), ('…', '')]
        >>> truncate_segments([("short", "")], 10)
        [('short', '')]
    """
    if sum(_cell_width(text) for text, _ in segments) <= width:
        return list(segments)
    out: list[Segment] = []
    room = width - 1  # the ellipsis' cell
    for text, style in segments:
        cut, cells = 0, 0
        while cut < len(text) and cells + _cell_width(text[cut]) <= room:
            cells += _cell_width(text[cut])
            cut += 1
        if cut:
            _append(out, text[:cut], style)
        room -= cells
        if cut < len(text):
            break
    _append(out, "…", "")
    return out


def _styled(segments: Sequence[Segment], color: bool) -> list[Segment]:
    """In plain text, wdiff marks around changes (``[-gone-]{+new+}``); in colour, the styles alone."""
    if color:
        return [(visible(text), style) for text, style in segments]
    out: list[Segment] = []
    for text, style in segments:
        opening, closing = _MARKS.get(style, ("", ""))
        out.append((opening + visible(text) + closing, style))
    return out


def _paint(line: Sequence[Segment], color: bool) -> str:
    if not color:
        return "".join(text for text, _ in line)
    return "".join(f"{_COLORS[style]}{text}\x1b[0m" if style else text for text, style in line)


def _labelled(label: str, text: str, width: int) -> list[str]:
    """``label`` then ``text`` wrapped under it with a hanging indent."""
    lines = wrap_segments([(visible(text), "")], max(8, width - len(label)))
    return [(label if i == 0 else " " * len(label)) + _paint(line, False) for i, line in enumerate(lines)]


def _cells(label: str, text: str, before: str | None, *, diff: bool, color: bool) -> list[Segment]:
    if text and text.isspace():  # a completion of blanks only would show as nothing: mark each space
        text, before = text.replace(" ", "␠"), before.replace(" ", "␠") if before is not None else None
    segments = diff_segments(before, text) if diff and before is not None else [(text, "")]
    return [(label, ""), *_styled(segments, color)] if label else _styled(segments, color)


def _pad(line: Sequence[Segment], width: int) -> list[Segment]:
    return [*line, (" " * max(0, width - sum(_cell_width(text) for text, _ in line)), "")]


def _run_heading(group: list[Record], groups: list[list[Record]], width: int) -> str:
    run = group[0].run
    steps = sorted({r.step for g in groups if g[0].run == run for r in g})
    prompts = len({g[0].index for g in groups if g[0].run == run})
    title = f"━━ run {run}: {prompts} prompt{'s' * (prompts != 1)}, {len(steps)} step{'s' * (len(steps) != 1)} "
    title += f"({steps[0]}–{steps[-1]}) " if len(steps) > 1 else f"({steps[0]}) "
    return title + "━" * max(0, width - _cell_width(title))


def render_show(records: list[Record], *, width: int, diff: bool = False, color: bool = False,
                wrap: bool = False) -> str:
    """The history table of every prompt: the prompt, then a row per step (``step │ completion``).

    Each row is one line cut to ``width`` with an ellipsis, or, with ``wrap``, every character wrapped under its
    step. Newlines show as ⏎, tabs as ⇥, and a completion of spaces only as ␠ for each. With greedy completions, a ``greedy`` column beside the sampled one (wrapped: a row of its own). With
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
    out: list[str] = []
    for number, group in enumerate(groups):
        if many_runs and (number == 0 or groups[number - 1][0].run != group[0].run):
            out.append(_run_heading(group, groups, width))
        step_width = max(4, *(len(str(r.step)) for r in group))
        text_width = max(8, width - step_width - 3)
        title = f"── {group_title(group, many_runs, prompts)} "
        out.append(title + "─" * max(0, width - _cell_width(title)))

        out += _labelled("prompt: ", group[0].prompt, width)
        if group[0].reference is not None:
            out += _labelled("reference: ", group[0].reference, width)
        # One line per step: a greedy column beside the completion, the two sharing the width.
        columns = not wrap and any(r.greedy is not None for r in group)
        column_width = max(4, (text_width - 3) // 2) if columns else text_width
        header = f"{'step':>{step_width}} │ " + (f"{'completion':<{column_width}} │ greedy" if columns else "completion")
        out.append(header)
        rule = "─" * (step_width + 1) + "┼" + "─" * (column_width + 2 if columns else text_width + 1)
        out.append(rule + ("┼" + "─" * (text_width - column_width - 2) if columns else ""))
        previous: Record | None = None
        for r in group:
            if previous is not None and r.prompt != previous.prompt:
                out += _labelled("prompt: ", r.prompt, width)
            before = previous if previous is not None else None
            if columns:
                sampled = _cells("", r.completion, before and before.completion, diff=diff, color=color)
                greedy = _cells("", r.greedy or "", before and before.greedy, diff=diff, color=color)
                line = [*_pad(truncate_segments(sampled, column_width), column_width), (" │ ", ""),
                        *truncate_segments(greedy, text_width - column_width - 3)]
                out.append(f"{r.step:>{step_width}} │ {_paint(line, color)}".rstrip(" "))
                previous = r
                continue
            rows = [("", r.completion, before and before.completion)]
            if r.greedy is not None:
                rows.append(("greedy: ", r.greedy, before and before.greedy))
            for n, (label, text, old) in enumerate(rows):
                cells = _cells(label, text, old, diff=diff, color=color)
                lines = wrap_segments(cells, text_width) if wrap else [truncate_segments(cells, text_width)]
                for i, line in enumerate(lines):
                    step = str(r.step) if n == 0 and i == 0 else ""
                    out.append(f"{step:>{step_width}} │ {_paint(line, color)}".rstrip(" "))
            previous = r
        out.append("")
    return "\n".join(out)
