"""How a sample's characters are made visible: the one rule the console, the terminal viewer and the dashboard use.

Model output is shown verbatim, but some characters would be invisible or would act instead of showing: a newline
folds the text, a tab jumps, spaces at a line's end look like nothing, a control character can drive a terminal, an
empty completion looks like no completion, and an end-of-sequence token is a token, not text. Each becomes a
`Piece` with a ``mark`` naming what it stands for, so every view can style marks apart from the model's own
characters (grey in the dashboard, dim in the terminal) and give their ``title`` as a tooltip:

- a newline shows as ``⏎`` (mark ``newline``), a tab as ``⇥`` (``tab``), a no-break space as ``⍽`` (``nbsp``);
- a space that only spaces follow up to the end of its line shows as ``·`` (``space``);
- a control character as its Unicode picture (``␛`` for ESC, ``␡`` for DEL) or, for C1 controls, as ``\\x85``
  (``control``, its code point in the title);
- an empty text as ``∅`` (``empty``);
- an end-of-sequence token as ``EOS`` (``eos``), a badge where it can be styled, ``⟨EOS⟩`` in plain text.

Pure Python: no torch, no Lightning, no web framework.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

__all__ = [
    "EOS_PLAIN",
    "Piece",
    "eos_piece",
    "labelled_pieces",
    "one_line",
    "plain",
    "shown_completion",
    "split_eos",
    "visible",
]

#: How an end-of-sequence mark reads where nothing can be styled (a log line, markdown, a terminal without colour).
EOS_PLAIN = "⟨EOS⟩"

_PICTURES = {"\n": ("⏎", "newline", "newline"), "\t": ("⇥", "tab", "tab"),
             "\u00a0": ("⍽", "nbsp", "no-break space")}


class Piece(NamedTuple):
    """A run of shown text.

    Attributes:
        text: What is shown.
        mark: None when ``text`` is the sample's own characters; else what kind of mark it is (``newline``,
            ``tab``, ``space``, ``nbsp``, ``control``, ``empty``, ``eos``).
        title: For a mark, what it stands for, in words (a tooltip); empty otherwise.
    """

    text: str
    mark: str | None = None
    title: str = ""


def _trailing(text: str) -> list[bool]:
    """Per character: a space that only spaces follow up to the end of its line (or of the text)."""
    out = [False] * len(text)
    only_spaces_after = True
    for i in range(len(text) - 1, -1, -1):
        c = text[i]
        if c == "\n":
            only_spaces_after = True
        elif c == " " and only_spaces_after:
            out[i] = True
        else:
            only_spaces_after = False
    return out


def _mark(c: str, trailing: bool) -> Piece | None:
    """The mark shown for character ``c``; None when ``c`` shows as itself."""
    if trailing:
        return Piece("·", "space", "trailing space")
    if c in _PICTURES:
        return Piece(*_PICTURES[c])
    if unicodedata.category(c) == "Cc":  # an escape sequence from the model must not drive the terminal
        code = ord(c)
        shown = chr(0x2400 + code) if code < 32 else "␡" if code == 127 else f"\\x{code:02x}"
        return Piece(shown, "control", f"control character U+{code:04X}")
    return None


def labelled_pieces(text: str, spans: Sequence[tuple[int, int, Any]] = ()) -> list[tuple[Piece, Any]]:
    """``text`` made visible, each piece with the label of the span it lies in (None outside every span).

    The rule sees the whole text, so a space is "trailing" by what follows it in the text, not in its span.
    Neighbouring characters of the same label that show as themselves are one piece.

    Args:
        text: The sample's text.
        spans: ``(start, end, label)`` character ranges, sorted and not overlapping (diff operations, tokens).

    Example::

        >>> labelled_pieces("a b\\n", [(0, 1, "x")])
        [(Piece(text='a', mark=None, title=''), 'x'), (Piece(text=' b', mark=None, title=''), None), \
(Piece(text='⏎', mark='newline', title='newline'), None)]
    """
    if not text:
        return [(Piece("∅", "empty", "empty text"), None)]
    labels: list[Any] = [None] * len(text)
    for start, end, label in spans:
        labels[start:end] = [label] * (end - start)
    out: list[tuple[Piece, Any]] = []
    for c, trailing, label in zip(text, _trailing(text), labels, strict=True):
        mark = _mark(c, trailing)
        if mark is not None:
            out.append((mark, label))
        elif out and out[-1][0].mark is None and out[-1][1] == label:
            out[-1] = (Piece(out[-1][0].text + c), label)
        else:
            out.append((Piece(c), label))
    return out


def visible(text: str) -> list[Piece]:
    """``text`` made visible: the model's characters as runs, each invisible or acting character as a mark.

    Example::

        >>> [tuple(p) for p in visible("a\\tb\\x1b  ")]
        [('a', None, ''), ('⇥', 'tab', 'tab'), ('b', None, ''), ('␛', 'control', 'control character U+001B'), \
('·', 'space', 'trailing space'), ('·', 'space', 'trailing space')]
    """
    return [piece for piece, _ in labelled_pieces(text)]


def eos_piece(eos_text: str | None = None) -> Piece:
    """The mark of an end-of-sequence token; ``eos_text`` is the token's text when it is known.

    Example::

        >>> eos_piece("</s>")
        Piece(text='EOS', mark='eos', title='end of sequence (its text: "</s>")')
    """
    what = f" (its text: {_quoted(eos_text)})" if eos_text else ""
    return Piece("EOS", "eos", f"end of sequence{what}")


def _quoted(text: str) -> str:
    return '"' + "".join(p.text for p in visible(text)).replace('"', '\\"') + '"'


def split_eos(completion: str, *, eos: bool | None, tokens: Sequence[str] | None = None,
              eos_text: str | None = None) -> tuple[str, str | None]:
    """``(text, eos_text)``: the completion without the text of its end-of-sequence token, and that text.

    The EOS token's text is known from the completion's own tokens when they make up the completion exactly, else
    from ``eos_text`` (the run's EOS text, found in another record) when the completion ends with it. ``eos_text``
    in the result is None when the completion did not end with an EOS, "" when it did but its text is unknown or
    empty.

    Example::

        >>> split_eos("ok.<|endoftext|>", eos=True, tokens=["ok", ".", "<|endoftext|>"])
        ('ok.', '<|endoftext|>')
        >>> split_eos("ok.</s>", eos=None, eos_text="</s>"), split_eos("ok", eos=False)
        (('ok.', '</s>'), ('ok', None))
    """
    if eos is False:
        return completion, None
    if eos and tokens and "".join(tokens) == completion:
        last = tokens[-1]
        return completion[: len(completion) - len(last)], last
    if eos_text and completion.endswith(eos_text):
        return completion[: -len(eos_text)], eos_text
    return completion, "" if eos else None


def shown_completion(completion: str, eos_text: str | None) -> list[Piece]:
    """A completion (without its EOS text) made visible, then the EOS mark when it ended with one.

    Example::

        >>> [p.text for p in shown_completion("", "")], [p.text for p in shown_completion("a", None)]
        (['EOS'], ['a'])
    """
    if eos_text is None:
        return visible(completion)
    return [*(visible(completion) if completion else []), eos_piece(eos_text)]


def plain(pieces: Iterable[Piece]) -> str:
    """The pieces as plain text, where marks cannot be styled: the EOS mark as ``⟨EOS⟩``, others as shown.

    Example::

        >>> plain(shown_completion("a\\n", "</s>"))
        'a⏎⟨EOS⟩'
    """
    return "".join(EOS_PLAIN if p.mark == "eos" else p.text for p in pieces)


def one_line(text: str, limit: int | None = None, *, eos_text: str | None = None) -> str:
    """``text`` visible on one line, cut to ``limit`` characters with an ellipsis.

    Example::

        >>> one_line("Hi\\nthere", 6), one_line("ok", eos_text="")
        ('Hi⏎th…', 'ok⟨EOS⟩')
    """
    shown = plain(shown_completion(text, eos_text))
    return shown if limit is None or len(shown) <= limit else shown[: limit - 1] + "…"
