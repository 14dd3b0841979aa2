"""``lightning-gen export``: the samples as a markdown document or JSON Lines."""

from __future__ import annotations

import json
from dataclasses import asdict

from lightning_gen.text.rendering import markdown_code
from lightning_gen.text.tables import markdown_table, text_columns
from lightning_gen.text.visible import EOS_PLAIN, plain, visible
from lightning_gen.viewer.runs import Record, eos_text, group_records, group_title, split_text

__all__ = ["render_jsonl", "render_markdown"]


def _cell(record: Record, field: str, run_eos: str | None) -> str:
    """A text made visible (`lightning_gen.text.visible`) as a code span; an end of sequence after it."""
    split = split_text(record, field, run_eos) if field != "reference" else (record.reference, None)
    if split is None or split[0] is None:
        return ""
    text, eos = split
    code = markdown_code(plain(visible(text)), in_table=True) if text or eos is None else ""
    return " ".join(part for part in (code, EOS_PLAIN if eos is not None else "") if part)


def render_markdown(records: list[Record]) -> str:
    """A markdown document: a section per prompt, then a table ``step | completion`` (and greedy, reference).

    Texts are code spans, made visible as in the terminal (⏎ for a newline, · for a space ending a line), so
    the source reads as plainly as the rendered page and nothing but a table's ``|`` is escaped. With several
    runs, a section per run (``## run `tb/version_0```) holds its prompts (``###``).

    Example::

        >>> print(render_markdown([Record(".", "samples", 0, 5, "Hi *", " there\\n|")]))
        # lightning-gen samples
        <BLANKLINE>
        ## samples/prompt_00
        <BLANKLINE>
        **Prompt:** `Hi *`
        <BLANKLINE>
        | step | completion |
        |---:|---|
        | 5 | `  there⏎\\| ` |
        <BLANKLINE>
    """
    many_runs = len({r.run for r in records}) > 1
    prompts = 1 + max((r.index for r in records), default=0)
    run_eos = {run: eos_text(r for r in records if r.run == run) for run in {r.run for r in records}}
    out = ["# lightning-gen samples", ""]
    run = None
    for group in group_records(records):
        if many_runs and group[0].run != run:
            run = group[0].run
            out += [f"## run {markdown_code(run)}", ""]
        level = "###" if many_runs else "##"
        prompt = markdown_code(plain(visible(group[0].prompt)))
        out += [f"{level} {group_title(group, False, prompts)}", "", f"**Prompt:** {prompt}", ""]
        columns = text_columns(group)
        rows = [[str(r.step), *(_cell(r, c, run_eos[r.run]) for c in columns)] for r in group]
        out += [markdown_table(["step", *columns], rows, align=["right"] + ["left"] * len(columns)), ""]
    return "\n".join(out)


def render_jsonl(records: list[Record]) -> str:
    """One JSON object per prompt per step: the ``samples.jsonl`` fields plus ``run`` (ids null when unknown)."""
    return "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in records)
