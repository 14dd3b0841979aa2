"""``lightning-gen export``: the samples as a markdown document or JSON Lines."""

from __future__ import annotations

import json
from dataclasses import asdict

from lightning_gen.text.rendering import markdown_escape
from lightning_gen.text.tables import markdown_table, text_columns
from lightning_gen.viewer.records import Record, group_records, group_title

__all__ = ["render_jsonl", "render_markdown"]


def render_markdown(records: list[Record]) -> str:
    """A markdown document: a section per prompt, then a table ``step | completion`` (and greedy, reference).

    With several runs, a section per run (``## run tb/version_0``) holds its prompts (``###``).
    """
    many_runs = len({r.run for r in records}) > 1
    prompts = 1 + max((r.index for r in records), default=0)
    out = ["# lightning-gen samples", ""]
    run = None
    for group in group_records(records):
        if many_runs and group[0].run != run:
            run = group[0].run
            out += [f"## run {markdown_escape(run)}", ""]
        level = "###" if many_runs else "##"
        out += [f"{level} {group_title(group, False, prompts)}", "", f"**Prompt:** {markdown_escape(group[0].prompt)}", ""]
        columns = text_columns(group)
        rows = [[str(r.step), *(markdown_escape(getattr(r, c) or "") for c in columns)] for r in group]
        out += [markdown_table(["step", *columns], rows, align=["right"] + ["left"] * len(columns)), ""]
    return "\n".join(out)


def render_jsonl(records: list[Record]) -> str:
    """One JSON object per prompt per step: the ``samples.jsonl`` fields plus ``run`` (ids null when unknown)."""
    return "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in records)
