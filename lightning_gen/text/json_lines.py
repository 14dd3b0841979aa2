"""JSON Lines files a user writes (prompts, task examples): one JSON value per line, read strictly.

Pure Python. Blank lines are skipped; a line that is not JSON is an error naming the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["read_json_lines"]


def read_json_lines(path: Path, *, named: str) -> list[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of ``path`` (numbers from 1, as an editor shows them).

    Args:
        named: How errors name the file's role, e.g. ``"`prompts` file"`` or ``"task 'arc':"``.

    Raises:
        ValueError: A line that is not JSON, naming ``named``, the file and the line.

    Example::

        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "rows.jsonl"
        >>> _ = path.write_text('{"a": 1}\\n\\n[2]\\n')
        >>> read_json_lines(path, named="`rows` file")
        [(1, {'a': 1}), (3, [2])]
    """
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            raise ValueError(f"{named} '{path}' line {number} is not valid JSON: {err.msg}") from None
    return rows
