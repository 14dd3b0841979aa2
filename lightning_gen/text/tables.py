"""One table of samples, whatever shows it: which columns it has, and its markdown form.

TensorBoard's overview, the MLflow artifact, the CSV file, the W&B table and ``lightning-gen export`` all take
their columns from `text_columns`; the markdown tables are all built by `markdown_table` with the viewer's own
escaping of cells.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["OPTIONAL_TEXT_COLUMNS", "markdown_table", "sample_table", "text_columns"]

#: Text columns shown only when some row has them.
OPTIONAL_TEXT_COLUMNS = ("greedy", "reference")


def text_columns(rows: Sequence[Any]) -> list[str]:
    """``completion``, then ``greedy`` and ``reference`` when any row (a `Sample` or a record) has one.

    Example::

        >>> from lightning_gen.text.samples import Sample
        >>> text_columns([Sample("a", "b", [0], [1], reference="c")])
        ['completion', 'reference']
    """
    return ["completion"] + [name for name in OPTIONAL_TEXT_COLUMNS if any(getattr(r, name) is not None for r in rows)]


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, align: Sequence[str] | None = None
) -> str:
    """A GitHub-flavoured markdown table; cells must already be escaped for the renderer that shows them.

    Args:
        header: Column titles.
        rows: One list of cell texts per row.
        align: Per column ``"left"`` (default) or ``"right"``.

    Example::

        >>> print(markdown_table(["#", "text"], [["0", "hi"]], align=["right", "left"]))
        | # | text |
        |---:|---|
        | 0 | hi |
    """
    rules = ["---:" if a == "right" else "---" for a in (align or ["left"] * len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rules) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def sample_table(samples: Sequence[Any], escape: Callable[[str], str]) -> str:
    """One step's samples as a markdown table ``# | prompt | completion [| greedy] [| reference]``.

    Example::

        >>> from lightning_gen.text.samples import Sample
        >>> print(sample_table([Sample("a|b", "c", [0], [1])], escape=lambda s: s.replace("|", "\\\\|")))
        | # | prompt | completion |
        |---|---|---|
        | 0 | a\\|b | c |
    """
    columns = text_columns(samples)
    rows = [[str(i), escape(s.prompt), *(escape(getattr(s, c) or "") for c in columns)] for i, s in enumerate(samples)]
    return markdown_table(["#", "prompt", *columns], rows)
