"""Read back the samples a run logged: ``samples.jsonl`` files, else TensorBoard event files."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lightning_gen.text.records import RECORDS_FILE, parse_prompt_tag, prompt_tag, tag_width
from lightning_gen.text.rendering import parse_sample_markdown
from lightning_gen.text.visible import split_eos
from lightning_gen.viewer._errors import CliError, existing_logdir

__all__ = [
    "Record",
    "eos_text",
    "group_records",
    "group_title",
    "json_lines",
    "load_records",
    "read_run",
    "records_files",
    "select_records",
    "split_text",
]

_EVENTS_GLOB = "events.out.tfevents.*"
T = TypeVar("T")


@dataclass(frozen=True)
class Record:
    """One prompt's sample at one step of one run, as read back from the logs.

    ``run`` is the directory the samples came from, relative to LOGDIR; ids and metrics are only known when
    they came from a ``samples.jsonl``, and ``token_logprobs`` (one per completion token) only when the round
    was scored.
    """

    run: str
    tag: str
    index: int
    step: int
    prompt: str
    completion: str
    greedy: str | None = None
    reference: str | None = None
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    token_logprobs: list[float] | None = None
    tokens: list[str] | None = None
    eos: bool | None = None


def _warn(message: str) -> None:
    print(f"lightning-gen: warning: {message}", file=sys.stderr)


def _run_name(directory: Path, root: Path) -> str:
    return directory.relative_to(root).as_posix() if directory != root else "."


def json_lines(path: str | os.PathLike[str], parse: Callable[[Any], T | None], what: str) -> list[T]:
    """``parse`` of each JSON object of a JSON Lines file, those it returns None for left out.

    A line that is not JSON, or that ``parse`` refuses (`ValueError`, `KeyError`, `TypeError`, `AttributeError`),
    is skipped with a warning that names it as not ``what``: a run killed mid-write leaves a torn last line, and
    one bad line should not hide the rest.
    """
    out = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                parsed = parse(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                _warn(f"{path}:{number}: skipped, not {what} ({type(err).__name__}: {err})")
                continue
            if parsed is not None:
                out.append(parsed)
    return out


def _read_jsonl(path: Path, run: str, tag: str | None) -> list[Record]:
    """The records of ``tag`` in one records file (None: of every tag; a record without one is ``samples``)."""

    def parse(obj: dict[str, Any]) -> Record | None:
        if tag is not None and obj.get("tag", tag) != tag:
            return None
        return Record(
            run=run, tag=str(obj.get("tag", tag or "samples")), index=int(obj["index"]), step=int(obj["step"]),
            prompt=str(obj["prompt"]), completion=str(obj["completion"]),
            greedy=obj.get("greedy"), reference=obj.get("reference"),
            prompt_ids=obj.get("prompt_ids"), completion_ids=obj.get("completion_ids"),
            metrics=dict(obj.get("metrics") or {}), token_logprobs=obj.get("token_logprobs"),
            tokens=obj.get("tokens"), eos=obj.get("eos"),
        )

    return json_lines(path, parse, "a sample record")


def _read_events(directory: Path, run: str, tag: str) -> tuple[list[Record], set[str]]:
    """The records of ``tag`` in one directory's event files, and every monitor tag found there."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory), size_guidance={"tensors": 0})
    accumulator.Reload()
    records, tags = [], set()
    for name in accumulator.Tags().get("tensors", []):
        parsed = parse_prompt_tag(name)
        if parsed:
            tags.add(parsed[0])
        if not parsed or parsed[0] != tag:
            continue
        for event in accumulator.Tensors(name):
            sample = parse_sample_markdown(event.tensor_proto.string_val[0].decode("utf-8"))
            records.append(Record(run=run, tag=tag, index=parsed[1], step=event.step,
                                  prompt=sample.prompt, completion=sample.completion,
                                  greedy=sample.greedy, reference=sample.reference))
    return records, tags


def _latest(records: Iterable[Record]) -> list[Record]:
    """One record per (run, tag, prompt, step), the last one read (a resumed run may log a step twice)."""
    unique = {(r.run, r.tag, r.index, r.step): r for r in records}
    return [unique[key] for key in sorted(unique)]


def records_files(logdir: str | os.PathLike[str], name: str = RECORDS_FILE) -> dict[str, Path]:
    """Every run under ``logdir`` that has a records file called ``name`` (the samples', or the evaluations'
    ``evaluations.jsonl``): run (its directory relative to ``logdir``, ``"."`` for ``logdir`` itself) → file.

    Example::

        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for run in ("a/version_0", "b"):
        ...     (root / run).mkdir(parents=True)
        ...     _ = (root / run / RECORDS_FILE).write_text("")
        >>> {run: path.relative_to(root).as_posix() for run, path in records_files(root).items()}
        {'a/version_0': 'a/version_0/samples.jsonl', 'b': 'b/samples.jsonl'}
    """
    root = Path(logdir)
    return {_run_name(path.parent, root): path for path in sorted(root.rglob(name)) if path.is_file()}


def read_run(path: str | os.PathLike[str], run: str) -> list[Record]:
    """Every record of one records file, of every tag, with ``run`` as their run (`load_records`' order)."""
    return _latest(_read_jsonl(Path(path), run, None))


def load_records(logdir: str | os.PathLike[str], tag: str = "samples") -> list[Record]:
    """Every sample logged under ``logdir`` (a directory, a ``samples.jsonl`` or an event file) for ``tag``.

    ``samples.jsonl`` files are preferred: when LOGDIR holds any, event files are not read.

    Returns:
        Records sorted by run, prompt index and step.

    Raises:
        CliError: ``logdir`` does not exist (code 2); nothing was logged under ``tag`` (code 1).
    """
    root = existing_logdir(logdir)
    base = root.parent if root.is_file() else root
    if root.is_file():
        jsonl, events = ([root], []) if root.suffix == ".jsonl" else ([], [root])
    else:
        jsonl = list(records_files(root).values())
        events = [] if jsonl else sorted(root.rglob(_EVENTS_GLOB))
    records: list[Record] = []
    tags: set[str] = set()
    for path in jsonl:
        records += _read_jsonl(path, _run_name(path.parent, base), tag)
    # An accumulator reads every event file of its directory in order: one per directory (= per run).
    for source in [root] if events and root.is_file() else sorted({path.parent for path in events}):
        found, found_tags = _read_events(source, _run_name(source if source.is_dir() else source.parent, base), tag)
        records += found
        tags |= found_tags
    files = jsonl or events
    if not records:
        what = f"{len(files)} {RECORDS_FILE if jsonl else 'event'} file(s)" if files else f"no {RECORDS_FILE} or event file"
        hint = f"; tags found: {', '.join(sorted(tags))} (pass --tag)" if tags else ""
        raise CliError(f"no samples with tag {tag!r} under {str(logdir)!r} ({what}){hint}")
    return _latest(records)


def select_records(records: list[Record], prompts: Sequence[int] | None, steps: Sequence[int] | None) -> list[Record]:
    """The records of the given prompt indices and steps (None: all).

    Raises:
        CliError: Nothing matches; the message lists the prompts and steps there are.
    """
    selected = [r for r in records if (prompts is None or r.index in prompts) and (steps is None or r.step in steps)]
    if not selected:
        have_prompts = ", ".join(map(str, sorted({r.index for r in records})))
        have_steps = ", ".join(map(str, sorted({r.step for r in records})))
        asked = " ".join(f"{flag} {' '.join(map(str, values))}" for flag, values in
                         (("--prompt", prompts), ("--steps", steps)) if values is not None)
        raise CliError(f"no samples match {asked} (prompts: {have_prompts}; steps: {have_steps})")
    return selected


def group_records(records: list[Record]) -> list[list[Record]]:
    """Records grouped per (run, tag, prompt), in order; each group sorted by step."""
    groups: dict[tuple[str, str, int], list[Record]] = {}
    for r in records:
        groups.setdefault((r.run, r.tag, r.index), []).append(r)
    return [sorted(group, key=lambda r: r.step) for _, group in sorted(groups.items())]


def group_title(group: list[Record], many_runs: bool, prompts: int = 1) -> str:
    """The group's prompt tag as the monitor wrote it (``prompts``: how many prompts the run had), and its run."""
    first = group[0]
    title = prompt_tag(first.tag, first.index, tag_width(prompts))
    return f"{first.run} · {title}" if many_runs else title


def eos_text(records: Iterable[Record]) -> str | None:
    """The text of the run's end-of-sequence token, as the first record that ended with one and has its tokens'
    texts tells it; None if none does. It marks where a greedy completion ended too, which has no tokens logged.

    Example::

        >>> ended = Record(".", "samples", 0, 5, "p", "ok</s>", completion_ids=[1, 2], tokens=["ok", "</s>"], eos=True)
        >>> eos_text([Record(".", "samples", 0, 0, "p", "x"), ended])
        '</s>'
    """
    for r in records:
        text, found = split_eos(r.completion, eos=r.eos, tokens=r.tokens)
        if found:
            return found
    return None


def split_text(record: Record, field: str, run_eos: str | None) -> tuple[str, str | None] | None:
    """``(text, eos)`` of the record's ``completion`` or ``greedy``: the text without its end-of-sequence token's,
    and that token's text (None: it did not end with one); None when the record has no such text.

    ``run_eos`` is the run's EOS text (`eos_text`): the greedy completion ended with an EOS when it ends with it.

    Example::

        >>> r = Record(".", "samples", 0, 0, "p", "ok</s>", greedy="ok ok</s>", eos=True)
        >>> split_text(r, "completion", "</s>"), split_text(r, "greedy", "</s>"), split_text(r, "reference", None)
        (('ok', '</s>'), ('ok ok', '</s>'), None)
    """
    text = getattr(record, field)
    if text is None:
        return None
    if field == "completion":
        return split_eos(text, eos=record.eos, tokens=record.tokens, eos_text=run_eos)
    return split_eos(text, eos=None, eos_text=run_eos)
