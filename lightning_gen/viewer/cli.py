"""`lightning-gen`: read back the samples a run logged and show how each prompt's completion changed.

Usage::

    lightning-gen show LOGDIR [--tag samples] [--prompt N ...] [--steps S ...] [--diff] [--wrap] [--width W]
                       [--no-pager] [--color auto|always|never] [--follow [--interval SECONDS]]
    lightning-gen show LOGDIR --evaluations [--steps S ...] [--width W] [--no-pager]
    lightning-gen export LOGDIR --format md|jsonl [--out FILE]

``show`` prints a table per prompt, a row per step, laid out by `rich` to the terminal's width: each completion
on one line cut with an ellipsis (``--wrap``: everything), the greedy completion beside it when both fit a line
of prose, else under it. ``--diff`` marks what changed since the previous step in the greedy completions. On a
terminal, output longer than the screen goes through a pager as ``git log``'s does: ``$LIGHTNING_GEN_PAGER``,
else ``$PAGER``, else ``less`` (with ``LESS=FRX`` unless ``LESS`` is set: colours pass, and it quits at the end
of a short text). Each run under LOGDIR is shown under a heading of its own. ``show --follow`` watches a run
that is training: the last round, then each new one as it is written, until Ctrl-C. ``show --evaluations``
prints what `TaskMonitor` measured instead (its ``evaluations.jsonl``): per run ``core`` and a table per task, a
row per evaluated step with the task's metrics and the examples learned and forgotten since the row above.

LOGDIR is searched recursively. ``samples.jsonl`` files (one JSON object per prompt per step, written by the
monitor) are read when there are any, since they keep ids and metrics; otherwise TensorBoard event files, whose
``{tag}/prompt_NN`` text is parsed back from the escaped markdown `lightning_gen.text.rendering` stores. Exit codes:
0 done, 1 no samples (or none match the filters), 2 bad arguments or a LOGDIR that does not exist.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from lightning_gen.viewer._errors import CliError
from lightning_gen.viewer.export import render_jsonl, render_markdown
from lightning_gen.viewer.follow import follow
from lightning_gen.viewer.runs import load_records, select_records
from lightning_gen.viewer.show import render_show
from lightning_gen.viewer.show_evaluations import load_evaluations, render_evaluations

__all__ = ["main"]

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning-gen",
        description="Read back the samples GenerationMonitor logged (and TaskMonitor's evaluations).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{show,export}")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("logdir", metavar="LOGDIR", help="a log directory (searched recursively) or a samples.jsonl")
        sub.add_argument("--tag", default="samples", help="the monitor's tag (default: %(default)s)")
        sub.add_argument("--prompt", type=int, nargs="+", metavar="N", help="only these prompt indices")
        sub.add_argument("--steps", type=int, nargs="+", metavar="S", help="only these steps")

    show = commands.add_parser("show", help="print each prompt's completions step by step")
    common(show)
    show.add_argument("--diff", action="store_true",
                      help="mark the words that changed since the previous step in the greedy completions (the "
                           "sampled ones when there are none), with the share of words kept")
    show.add_argument("--wrap", action="store_true", help="wrap long completions instead of cutting them to one line")
    show.add_argument("--width", type=int, metavar="W", help="line width (default: the terminal's)")
    show.add_argument("--no-pager", action="store_true", help="never page, even when the output is longer than the screen")
    show.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                      help="colour the marks and the --diff (auto: when stdout is a terminal and NO_COLOR is unset)")
    show.add_argument("--follow", action="store_true",
                      help="watch a run that is training: its last round, then each new one, until Ctrl-C")
    show.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                      help="with --follow, how often to look for new rounds (default: %(default)s)")
    show.add_argument("--evaluations", action="store_true",
                      help="print TaskMonitor's evaluations instead: per task its metrics at each evaluated step and "
                           "the examples learned and forgotten since the step before")
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


def _pager() -> str | None:
    """The pager command, chosen as git chooses: ``LIGHTNING_GEN_PAGER``, ``PAGER``, ``less``; None for none."""
    command = os.environ.get("LIGHTNING_GEN_PAGER", os.environ.get("PAGER", "less")).strip()
    if not command or command == "cat":
        return None
    return command if shutil.which(command.split()[0]) else None


def _page(command: str, text: str) -> None:
    """Pipe ``text`` through the pager (a shell command, as git runs it) and wait until the reader quits it."""
    import subprocess

    env = {"LESS": "FRX", "LV": "-c", **os.environ}
    pager = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env)
    try:
        pager.stdin.write(text.encode(sys.stdout.encoding or "utf-8", "backslashreplace"))
        pager.stdin.close()
    except BrokenPipeError:  # the reader quit before the end
        pass
    while True:
        try:
            pager.wait()
            return
        except KeyboardInterrupt:  # Ctrl-C belongs to the pager (less uses it), as under git
            continue


def _pager_for(text: str, lines: int) -> str | None:
    """The pager for ``text``: on a terminal, when it is longer than the screen's ``lines``."""
    return _pager() if sys.stdout.isatty() and text.count("\n") >= lines else None


def _show(text: str, pager: str | None) -> None:
    if pager is not None:
        sys.stdout.flush()
        _page(pager, text)
    else:
        _write(sys.stdout, text)
        sys.stdout.flush()


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
    if args.command == "show" and args.follow and args.steps is not None:
        parser.error("--steps does not go with --follow, which shows each new step")
    if args.command == "show" and not args.interval > 0:
        parser.error(f"--interval must be positive, got {args.interval}")
    if args.command == "show" and args.evaluations and (args.follow or args.prompt or args.diff):
        parser.error("--evaluations shows tasks, not prompts: --follow, --prompt and --diff do not go with it")
    try:
        if args.command == "show" and args.follow:
            width = args.width or shutil.get_terminal_size((100, 24)).columns
            try:
                follow(args.logdir, tag=args.tag, prompts=args.prompt, width=width, out=sys.stdout, diff=args.diff,
                       color=_use_color(args.color), wrap=args.wrap, interval=args.interval)
            except KeyboardInterrupt:  # Ctrl-C is how a watch ends
                pass
            return 0
        size = shutil.get_terminal_size((100, 24))
        if args.command == "show" and args.evaluations:
            text = render_evaluations(load_evaluations(args.logdir), width=args.width or size.columns,
                                      steps=args.steps)
            _show(text, None if args.no_pager else _pager_for(text, size.lines))
            return 0
        records = select_records(load_records(args.logdir, args.tag), args.prompt, args.steps)
        pager = None
        if args.command == "show":
            text = render_show(records, width=args.width or size.columns, diff=args.diff, color=_use_color(args.color),
                               wrap=args.wrap)
            pager = None if args.no_pager else _pager_for(text, size.lines)
        else:
            text = render_markdown(records) if args.format == "md" else render_jsonl(records)
        if args.command == "export" and args.out:
            Path(args.out).write_text(text, encoding="utf-8")
            print(f"lightning-gen: wrote {len(records)} samples to {args.out}", file=sys.stderr)
        else:
            _show(text, pager)
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
