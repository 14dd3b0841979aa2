"""What changed between two completions: a word diff and a similarity figure, the one home of both.

Words, runs of whitespace and single punctuation marks are the units compared (`difflib`, no junk heuristic).
The terminal viewer shows the diff inline (`inline_diff`), the dashboard side by side (`diff_sides`); both come
already made visible by `lightning_gen.text.visible`, so a diffed text follows the same rule as any other.
Pure Python.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

from lightning_gen.text.visible import Piece, eos_piece, labelled_pieces

__all__ = ["Op", "diff_sides", "inline_diff", "similarity", "word_diff"]

#: ``""`` in both texts, ``"del"`` only in the old one, ``"add"`` only in the new one.
Op = Literal["", "del", "add"]

_UNITS = re.compile(r"\s+|\w+|[^\w\s]")


def _units(text: str) -> list[re.Match[str]]:
    return list(_UNITS.finditer(text))


def _opcodes(old: str, new: str) -> tuple[list[re.Match[str]], list[re.Match[str]], list[tuple[str, int, int, int, int]]]:
    a, b = _units(old), _units(new)
    matcher = difflib.SequenceMatcher(None, [m.group() for m in a], [m.group() for m in b], autojunk=False)
    return a, b, matcher.get_opcodes()


def _span(units: list[re.Match[str]], i: int, j: int) -> tuple[int, int]:
    """The character range of ``units[i:j]``."""
    return (units[i].start(), units[j - 1].end()) if j > i else (0, 0)


def word_diff(old: str, new: str) -> list[tuple[str, Op]]:
    """``new`` as runs of text marked by what changed since ``old``, deleted words where they were.

    Example::

        >>> word_diff("the cat sat", "the dog sat")
        [('the ', ''), ('cat', 'del'), ('dog', 'add'), (' sat', '')]
    """
    a, b, opcodes = _opcodes(old, new)
    out: list[tuple[str, Op]] = []
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            start, end = _span(b, j1, j2)
            out.append((new[start:end], ""))
            continue
        if i2 > i1:
            start, end = _span(a, i1, i2)
            out.append((old[start:end], "del"))
        if j2 > j1:
            start, end = _span(b, j1, j2)
            out.append((new[start:end], "add"))
    return out


def similarity(old: str, new: str) -> float:
    """The share of words two texts have in common, in order (difflib's ratio over words, whitespace ignored).

    1.0 for the same words (or two texts without any), 0.0 for none in common: the learning signal of two greedy
    completions, which only differ where the model changed.

    Example::

        >>> similarity("the cat sat", "the dog sat"), similarity("", "")
        (0.6666666666666666, 1.0)
    """
    a = [m.group() for m in _units(old) if not m.group().isspace()]
    b = [m.group() for m in _units(new) if not m.group().isspace()]
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _labelled_sides(old: str, new: str) -> tuple[list[tuple[Piece, tuple[int, Op]]], list[tuple[Piece, tuple[int, Op]]]]:
    """Both texts made visible, each piece labelled ``(opcode number, op)``, so the two can be interleaved."""
    a, b, opcodes = _opcodes(old, new)
    old_spans, new_spans = [], []
    for k, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if i2 > i1:
            old_spans.append((*_span(a, i1, i2), (k, "" if tag == "equal" else "del")))
        if j2 > j1:
            new_spans.append((*_span(b, j1, j2), (k, "" if tag == "equal" else "add")))
    # A text shows on its own (each side's spaces are trailing by what follows them there).
    return labelled_pieces(old, old_spans), labelled_pieces(new, new_spans)


def _ops(pieces: list[tuple[Piece, tuple[int, Op] | None]]) -> list[tuple[Piece, Op]]:
    return [(piece, label[1] if label else "") for piece, label in pieces]


def _eos_ops(old_eos: str | None, new_eos: str | None) -> tuple[list[tuple[Piece, Op]], list[tuple[Piece, Op]]]:
    """The EOS marks ending each side: kept (``""``) when both ended with one, else deleted or added."""
    both = old_eos is not None and new_eos is not None
    old = [] if old_eos is None else [(eos_piece(old_eos), "" if both else "del")]
    new = [] if new_eos is None else [(eos_piece(new_eos), "" if both else "add")]
    return old, new


def diff_sides(old: str, new: str, *, old_eos: str | None = None,
               new_eos: str | None = None) -> tuple[list[tuple[Piece, Op]], list[tuple[Piece, Op]]]:
    """Both texts made visible, the old one's deleted words marked ``del``, the new one's added words ``add``.

    ``old_eos`` / ``new_eos``: the text of the end-of-sequence token a side ended with (see
    `lightning_gen.text.visible.split_eos`), None if it did not; the side then ends with the EOS mark.

    Example::

        >>> old, new = diff_sides("a b", "a c\\n")
        >>> [(p.text, op) for p, op in old], [(p.text, op) for p, op in new]
        ([('a ', ''), ('b', 'del')], [('a ', ''), ('c', 'add'), ('⏎', 'add')])
    """
    old_side, new_side = _labelled_sides(old, new)
    old_end, new_end = _eos_ops(old_eos, new_eos)
    return _ops(_unless_empty(old_side, old_eos)) + old_end, _ops(_unless_empty(new_side, new_eos)) + new_end


def _unless_empty(side: list[Any], eos: str | None) -> list[Any]:
    """A side's pieces, without the ∅ of an empty text that an EOS mark follows (it is not empty then)."""
    return [] if eos is not None and side and side[0][0].mark == "empty" else side


def inline_diff(old: str, new: str, *, old_eos: str | None = None, new_eos: str | None = None) -> list[tuple[Piece, Op]]:
    """``new`` made visible with the words deleted since ``old`` where they were: git's ``--word-diff``, visible.

    ``old_eos`` / ``new_eos`` as for `diff_sides`: the EOS mark comes last, deleted, added or kept.

    Example::

        >>> [(p.text, op) for p, op in inline_diff("the cat sat", "the dog sat ")]
        [('the ', ''), ('cat', 'del'), ('dog', 'add'), (' sat', ''), ('·', 'add')]
    """
    old_side, new_side = _labelled_sides(old, new)
    old_end, new_end = _eos_ops(old_eos, new_eos)
    end = old_end if old_end and old_end[0][1] == "del" else []
    end += new_end
    if not old or not new:  # one side is empty (shown as ∅): the other is all there is
        side = _ops(new_side if new or not old else [(p, (0, "del")) for p, _ in old_side])
        return _unless_empty(side, None if not end else "") + end
    out: list[tuple[Piece, Op]] = []
    o = n = 0
    for k in range(max(label[0] for _, label in [*old_side, *new_side]) + 1):
        while o < len(old_side) and old_side[o][1][0] == k:
            if old_side[o][1][1] == "del":  # an equal stretch is the same on both sides: taken from the new one
                out.append((old_side[o][0], "del"))
            o += 1
        while n < len(new_side) and new_side[n][1][0] == k:
            out.append((new_side[n][0], new_side[n][1][1]))
            n += 1
    return out + end
