"""How a round is written down for later: the records file's name, one record's fields, and the tags per prompt.

The monitor writes these and the viewer reads them back, so both take them from here. Pure Python.
"""

from __future__ import annotations

import math
import re
from typing import Any

from lightning_gen.text.samples import Sample

__all__ = ["RECORDS_FILE", "parse_prompt_tag", "prompt_tag", "sample_record", "tag_width"]

#: The JSON Lines file of a run's samples, one object per prompt per step, in the run's log directory.
RECORDS_FILE = "samples.jsonl"

# TensorBoard stores `add_text(tag)` as `{tag}/text_summary`; `prompt_tag` names never contain a slash after it.
_PROMPT_TAG = re.compile(r"(.+)/prompt_(\d+)(?:/text_summary)?")


def tag_width(count: int) -> int:
    """Digits of the prompt numbers when there are ``count`` prompts: at least 2, so tags sort in order.

    Example::

        >>> tag_width(6), tag_width(100), tag_width(101)
        (2, 2, 3)
    """
    return max(2, len(str(max(count, 1) - 1)))


def prompt_tag(tag: str, index: int, width: int = 2) -> str:
    """The tag of one prompt's history: ``{tag}/prompt_{index}``, the number zero-padded to ``width`` digits.

    Example::

        >>> prompt_tag("samples", 3), prompt_tag("samples", 3, width=3)
        ('samples/prompt_03', 'samples/prompt_003')
    """
    return f"{tag}/prompt_{index:0{width}d}"


def parse_prompt_tag(name: str) -> tuple[str, int] | None:
    """``(tag, index)`` of a `prompt_tag` name, also as TensorBoard stores it (``.../text_summary``); else None.

    Example::

        >>> parse_prompt_tag("samples/prompt_07/text_summary"), parse_prompt_tag("samples/all")
        (('samples', 7), None)
    """
    match = _PROMPT_TAG.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else None


def sample_record(step: int, index: int, sample: Sample, *, tag: str) -> dict[str, Any]:
    """A sample as one JSON-ready dict, the schema of the records file.

    Non-finite metrics become None, so every line is strict JSON. ``token_logprobs`` holds the log-probability
    of each completion token when the round was scored (``score=True``), else None.

    Example::

        >>> sample_record(4, 0, Sample("Hi", " there", [1], [2], metrics={"length": 1.0}), tag="samples")
        ... # doctest: +NORMALIZE_WHITESPACE
        {'step': 4, 'tag': 'samples', 'index': 0, 'prompt': 'Hi', 'completion': ' there', 'greedy': None,
         'reference': None, 'prompt_ids': [1], 'completion_ids': [2], 'metrics': {'length': 1.0},
         'token_logprobs': None, 'tokens': None, 'eos': None}
    """
    metrics = {name: (float(v) if math.isfinite(v) else None) for name, v in sample.metrics.items()}
    return {
        "step": int(step), "tag": tag, "index": index, "prompt": sample.prompt, "completion": sample.completion,
        "greedy": sample.greedy, "reference": sample.reference, "prompt_ids": [int(i) for i in sample.prompt_ids],
        "completion_ids": [int(i) for i in sample.completion_ids], "metrics": metrics,
        "token_logprobs": _finite(sample.token_logprobs), "tokens": sample.tokens, "eos": sample.eos,
    }  # fmt: skip


def _finite(values: list[float] | None) -> list[float | None] | None:
    return None if values is None else [float(v) if math.isfinite(v) else None for v in values]
