"""Fixed prompts for monitoring: from a list, a ``.txt`` file (one a line) or a ``.jsonl`` file."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from lightning_gen.text.json_lines import read_json_lines
from lightning_gen.text.samples import Prompt

__all__ = ["load_prompts"]


def _from_jsonl(path: Path) -> list[Prompt]:
    prompts = []
    for number, record in read_json_lines(path, named="`prompts` file"):
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise ValueError(f"`prompts` file '{path}' line {number} must be an object with a string 'prompt', got "
                             f"{json.dumps(record)[:80]!r}")
        reference = record.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise ValueError(f"`prompts` file '{path}' line {number}: 'reference' must be a string, got {reference!r}")
        prompts.append(Prompt(record["prompt"], reference))
    return prompts


def load_prompts(prompts: Sequence[str] | str | os.PathLike[str]) -> list[Prompt]:
    """Read and check the prompts to monitor.

    Args:
        prompts: A list of prompt strings, or a path to a ``.txt`` file (one prompt a line, blank lines
            skipped) or a ``.jsonl`` file (objects with ``"prompt"`` and optional ``"reference"``).

    Returns:
        The prompts, in order.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: No prompts, an empty or whitespace-only prompt, or an unsupported file type.
        TypeError: ``prompts`` is neither a list of strings nor a path.

    Example::

        >>> load_prompts(["Once upon a time", "def main("])[1]
        Prompt(text='def main(', reference=None)
    """
    if isinstance(prompts, (str, os.PathLike)):
        path = Path(prompts)
        if not path.is_file():
            raise FileNotFoundError(f"`prompts` file not found: {str(path)!r}")
        if path.suffix == ".jsonl":
            loaded = _from_jsonl(path)
        elif path.suffix == ".txt":
            loaded = [Prompt(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            raise ValueError(f"`prompts` file must be .txt (one prompt a line) or .jsonl, got {str(path)!r}")
    elif isinstance(prompts, Sequence):
        for i, text in enumerate(prompts):
            if not isinstance(text, str):
                raise TypeError(f"`prompts[{i}]` must be a string, got {type(text).__name__}")
        loaded = [Prompt(text) for text in prompts]
    else:
        raise TypeError(f"`prompts` must be a list of strings or a path to a .txt/.jsonl file, got {type(prompts).__name__}")
    if not loaded:
        raise ValueError(f"`prompts` must hold at least one prompt, got none from {prompts!r}")
    for i, prompt in enumerate(loaded):
        if not prompt.text.strip():
            raise ValueError(f"`prompts[{i}]` is empty or whitespace only: {prompt.text!r}")
    return loaded
