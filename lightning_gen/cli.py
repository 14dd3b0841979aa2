"""`lightning-gen`: read back the samples a run logged and show how each prompt's completion changed.

Usage::

    lightning-gen show LOGDIR [--tag samples] [--prompt N ...] [--steps S ...] [--diff] [--width W]
    lightning-gen export LOGDIR --format md|jsonl [--out FILE]

LOGDIR is searched recursively. ``samples.jsonl`` files (one JSON object per prompt per step, written by the
monitor) are read when there are any, since they keep ids and metrics; otherwise TensorBoard event files, whose
``{tag}/prompt_NN`` text is parsed back from the escaped markdown `lightning_gen.rendering` stores. Exit codes:
0 done, 1 no samples (or none match the filters), 2 bad arguments or a LOGDIR that does not exist.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from lightning_gen.rendering import Sample

__all__ = [
    "Record",
    "load_records",
    "main",
    "parse_sample_markdown",
    "render_jsonl",
    "render_markdown",
    "render_show",
    "unescape",
]

SAMPLES_FILE = "samples.jsonl"
_EVENTS_GLOB = "events.out.tfevents.*"
_PROMPT_TAG = re.compile(r"(.+)/prompt_(\d+)/text_summary")  # what `TensorBoardSink` writes, per prompt


class CliError(Exception):
    """A message for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Record:
    """One prompt's sample at one step of one run, as read back from the logs.

    ``run`` is the directory the samples came from, relative to LOGDIR; ids and metrics are only known when
    they came from a ``samples.jsonl``.
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


# ----------------------------------------------------------------- the inverse of rendering.escape
_REFERENCE_MARK = "<br><br><em>reference:</em> "
_GREEDY_MARK = "<br><br><em>greedy:</em> "
_PROMPT = re.compile(r"<strong>(.*?)</strong>(.*)", re.DOTALL)
_CHAR_REF = re.compile(r"&#(?:(\d+)|[xX]([0-9a-fA-F]+));")


def unescape(text: str) -> str:
    """Plain text from `lightning_gen.rendering.escape` output: character references, ``&#160;``, ``<br>``.

    ``escape`` normalises ``\\r\\n``/``\\r`` to ``\\n`` and tabs to four spaces; everything else round-trips.
    A literal no-break space in the text stays one; only the ``&#160;`` escape adds to keep spaces turns back
    into a space.

    Example::

        >>> unescape("&#160;&#160;a&#124;b<br>&#60;eos&#62;")
        '  a|b\\n<eos>'
    """

    def char(match: re.Match[str]) -> str:
        code = int(match.group(1)) if match.group(1) else int(match.group(2), 16)
        return " " if code == 160 else chr(code)

    return _CHAR_REF.sub(char, text.replace("<br>", "\n"))


def parse_sample_markdown(text: str) -> Sample:
    """The `Sample` behind `lightning_gen.rendering.sample_markdown` output (ids are not logged: empty).

    Text in another shape (not ``<strong>prompt</strong>completion``) is read as a completion of an empty prompt.

    Example::

        >>> parse_sample_markdown("<strong>Hi</strong> there<br><br><em>reference:</em> you")
        Sample(prompt='Hi', completion=' there', prompt_ids=[], completion_ids=[], reference='you', greedy=None, metrics={})
    """
    # Escaped text never holds a literal '<' other than in '<br>', so the marks cannot occur inside it.
    text, found, reference = text.partition(_REFERENCE_MARK)
    text, found_greedy, greedy = text.partition(_GREEDY_MARK)
    match = _PROMPT.fullmatch(text)
    prompt, completion = (match.group(1), match.group(2)) if match else ("", text)
    if found_greedy:
        greedy_match = _PROMPT.fullmatch(greedy)
        greedy = greedy_match.group(2) if greedy_match else greedy
    return Sample(
        prompt=unescape(prompt),
        completion=unescape(completion),
        prompt_ids=[],
        completion_ids=[],
        reference=unescape(reference) if found else None,
        greedy=unescape(greedy) if found_greedy else None,
    )


# ----------------------------------------------------------------- reading the logs
def _warn(message: str) -> None:
    print(f"lightning-gen: warning: {message}", file=sys.stderr)


def _run_name(directory: Path, root: Path) -> str:
    return directory.relative_to(root).as_posix() if directory != root else "."


def _read_jsonl(path: Path, run: str, tag: str) -> list[Record]:
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if obj.get("tag", tag) != tag:
                    continue
                records.append(Record(
                    run=run, tag=tag, index=int(obj["index"]), step=int(obj["step"]),
                    prompt=str(obj["prompt"]), completion=str(obj["completion"]),
                    greedy=obj.get("greedy"), reference=obj.get("reference"),
                    prompt_ids=obj.get("prompt_ids"), completion_ids=obj.get("completion_ids"),
                    metrics=dict(obj.get("metrics") or {}),
                ))
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                # A run killed mid-write leaves a torn last line; one bad line should not hide the rest.
                _warn(f"{path}:{number}: skipped, not a sample record ({type(err).__name__}: {err})")
    return records


def _read_events(directory: Path, run: str, tag: str) -> tuple[list[Record], set[str]]:
    """The records of ``tag`` in one directory's event files, and every monitor tag found there."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory), size_guidance={"tensors": 0})
    accumulator.Reload()
    records, tags = [], set()
    for name in accumulator.Tags().get("tensors", []):
        match = _PROMPT_TAG.fullmatch(name)
        if match:
            tags.add(match.group(1))
        if not match or match.group(1) != tag:
            continue
        for event in accumulator.Tensors(name):
            sample = parse_sample_markdown(event.tensor_proto.string_val[0].decode("utf-8"))
            records.append(Record(run=run, tag=tag, index=int(match.group(2)), step=event.step,
                                  prompt=sample.prompt, completion=sample.completion,
                                  greedy=sample.greedy, reference=sample.reference))
    return records, tags


def _latest(records: Iterable[Record]) -> list[Record]:
    """One record per (run, tag, prompt, step), the last one read (a resumed run may log a step twice)."""
    unique = {(r.run, r.tag, r.index, r.step): r for r in records}
    return [unique[key] for key in sorted(unique)]


def load_records(logdir: str | os.PathLike[str], tag: str = "samples") -> list[Record]:
    """Every sample logged under ``logdir`` (a directory, a ``samples.jsonl`` or an event file) for ``tag``.

    ``samples.jsonl`` files are preferred: when LOGDIR holds any, event files are not read.

    Returns:
        Records sorted by run, prompt index and step.

    Raises:
        CliError: ``logdir`` does not exist (code 2); nothing was logged under ``tag`` (code 1).
    """
    root = Path(logdir)
    if not root.exists():
        raise CliError(f"LOGDIR {str(logdir)!r} does not exist", code=2)
    base = root.parent if root.is_file() else root
    if root.is_file():
        jsonl, events = ([root], []) if root.suffix == ".jsonl" else ([], [root])
    else:
        jsonl = sorted(root.rglob(SAMPLES_FILE))
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
        what = f"{len(files)} {'samples.jsonl' if jsonl else 'event'} file(s)" if files else "no samples.jsonl or event file"
        hint = f"; tags found: {', '.join(sorted(tags))} (pass --tag)" if tags else ""
        raise CliError(f"no samples with tag {tag!r} under {str(logdir)!r} ({what}){hint}")
    return _latest(records)


def _select(records: list[Record], prompts: Sequence[int] | None, steps: Sequence[int] | None) -> list[Record]:
    selected = [r for r in records if (prompts is None or r.index in prompts) and (steps is None or r.step in steps)]
    if not selected:
        have_prompts = ", ".join(map(str, sorted({r.index for r in records})))
        have_steps = ", ".join(map(str, sorted({r.step for r in records})))
        asked = " ".join(f"{flag} {' '.join(map(str, values))}" for flag, values in
                         (("--prompt", prompts), ("--steps", steps)) if values is not None)
        raise CliError(f"no samples match {asked} (prompts: {have_prompts}; steps: {have_steps})")
    return selected


def _groups(records: list[Record]) -> list[list[Record]]:
    """Records grouped per (run, tag, prompt), in order; each group sorted by step."""
    groups: dict[tuple[str, str, int], list[Record]] = {}
    for r in records:
        groups.setdefault((r.run, r.tag, r.index), []).append(r)
    return [sorted(group, key=lambda r: r.step) for _, group in sorted(groups.items())]


def _title(group: list[Record], many_runs: bool) -> str:
    first = group[0]
    title = f"{first.tag}/prompt_{first.index:02d}"
    return f"{first.run} · {title}" if many_runs else title


# ----------------------------------------------------------------- show: a wrapped table in the terminal
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


def render_show(records: list[Record], *, width: int, diff: bool = False, color: bool = False) -> str:
    """The history table of every prompt: the prompt, then one wrapped row per step (``step │ completion``).

    Example::

        >>> records = [Record(".", "samples", 0, s, "Hi", c) for s, c in ((0, " xq"), (10, " there\\nyou"))]
        >>> print(render_show(records, width=40))
        ── samples/prompt_00 ───────────────────
        prompt: Hi
        step │ completion
        ─────┼──────────────────────────────────
           0 │  xq
          10 │  there⏎you
        <BLANKLINE>
    """
    many_runs = len({r.run for r in records}) > 1
    out: list[str] = []
    for group in _groups(records):
        step_width = max(4, *(len(str(r.step)) for r in group))
        text_width = max(8, width - step_width - 3)
        title = f"── {_title(group, many_runs)} "
        out.append(title + "─" * max(0, width - _cell_width(title)))

        out += _labelled("prompt: ", group[0].prompt, width)
        if group[0].reference is not None:
            out += _labelled("reference: ", group[0].reference, width)
        out.append(f"{'step':>{step_width}} │ completion")
        out.append("─" * (step_width + 1) + "┼" + "─" * (text_width + 1))
        previous: Record | None = None
        for r in group:
            if previous is not None and r.prompt != previous.prompt:
                out += _labelled("prompt: ", r.prompt, width)
            rows = [("", r.completion, previous.completion if previous else None)]
            if r.greedy is not None:
                rows.append(("greedy: ", r.greedy, previous.greedy if previous else None))
            for n, (label, text, before) in enumerate(rows):
                segments = diff_segments(before, text) if diff and before is not None else [(text, "")]
                lines = wrap_segments([(label, ""), *_styled(segments, color)], text_width)
                for i, line in enumerate(lines):
                    step = str(r.step) if n == 0 and i == 0 else ""
                    out.append(f"{step:>{step_width}} │ {_paint(line, color)}".rstrip(" "))
            previous = r
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------- export
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~$])")


def _markdown_text(text: str) -> str:
    """Text that a CommonMark/GFM renderer shows as written, inside a table cell or a paragraph."""
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = re.sub(r"(?m)^ | (?= )", "&nbsp;", text)  # leading spaces and all but the last of a run would collapse
    return text.replace("\n", "<br>")


def render_markdown(records: list[Record]) -> str:
    """A markdown document: a section per prompt, then a table ``step | completion`` (and greedy, reference)."""
    many_runs = len({r.run for r in records}) > 1
    out = ["# lightning-gen samples", ""]
    for group in _groups(records):
        out += [f"## {_title(group, many_runs)}", "", f"**Prompt:** {_markdown_text(group[0].prompt)}", ""]
        columns = ["completion"]
        columns += [name for name in ("greedy", "reference") if any(getattr(r, name) is not None for r in group)]
        out.append("| step | " + " | ".join(columns) + " |")
        out.append("|---:|" + "---|" * len(columns))
        for r in group:
            out.append(f"| {r.step} | " + " | ".join(_markdown_text(getattr(r, c) or "") for c in columns) + " |")
        out.append("")
    return "\n".join(out)


def render_jsonl(records: list[Record]) -> str:
    """One JSON object per prompt per step: the ``samples.jsonl`` fields plus ``run`` (ids null when unknown)."""
    return "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in records)


# ----------------------------------------------------------------- the command line
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightning-gen", description="Read back the samples GenerationMonitor logged.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{show,export}")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("logdir", metavar="LOGDIR", help="a log directory (searched recursively) or a samples.jsonl")
        sub.add_argument("--tag", default="samples", help="the monitor's tag (default: %(default)s)")
        sub.add_argument("--prompt", type=int, nargs="+", metavar="N", help="only these prompt indices")
        sub.add_argument("--steps", type=int, nargs="+", metavar="S", help="only these steps")

    show = commands.add_parser("show", help="print each prompt's completions step by step")
    common(show)
    show.add_argument("--diff", action="store_true", help="mark what changed since the previous step")
    show.add_argument("--width", type=int, metavar="W", help="line width (default: the terminal's)")
    show.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                      help="colour the --diff marks (auto: when stdout is a terminal and NO_COLOR is unset)")
    export = commands.add_parser("export", help="write the samples as markdown or JSON lines")
    common(export)
    export.add_argument("--format", choices=["md", "jsonl"], required=True)
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    return parser


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text)
    except UnicodeEncodeError:  # a legacy console encoding: keep going, show what cannot be encoded as escapes
        encoding = stream.encoding or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding))


def _use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightning-gen``; returns the exit code (0 ok, 1 no samples, 2 bad arguments or missing LOGDIR)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "show" and args.width is not None and args.width < 20:
        parser.error(f"--width must be at least 20, got {args.width}")
    try:
        records = _select(load_records(args.logdir, args.tag), args.prompt, args.steps)
        if args.command == "show":
            width = args.width or shutil.get_terminal_size((100, 24)).columns
            text = render_show(records, width=width, diff=args.diff, color=_use_color(args.color))
        else:
            text = render_markdown(records) if args.format == "md" else render_jsonl(records)
        if args.command == "export" and args.out:
            Path(args.out).write_text(text, encoding="utf-8")
            print(f"lightning-gen: wrote {len(records)} samples to {args.out}", file=sys.stderr)
        else:
            _write(sys.stdout, text)
            sys.stdout.flush()
    except CliError as err:
        print(f"lightning-gen: error: {err}", file=sys.stderr)
        return err.code
    except BrokenPipeError:  # `lightning-gen show ... | head`: the reader left, which is fine
        # Point stdout at devnull so the flush at interpreter exit does not raise again (Python docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
