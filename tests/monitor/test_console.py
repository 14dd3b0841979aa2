"""What the monitor prints: the console lines of a real training, read from Lightning's own logger."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tiny import TinyLM, trainer

from lightning_gen import GenerationMonitor
from lightning_gen.text.visible import plain, visible
from lightning_gen.viewer.cli import main

GEN = {"max_new_tokens": 5, "do_sample": True}
ROUND = re.compile(r"GenerationMonitor: step (\d+): 2 samples, ([0-9.]+) s, ([0-9.]+) tok/s")


def ours(lines) -> list[str]:
    """The round lines and the end-of-training lines (the monitor says other things, at setup for one)."""
    return [m for m in lines.messages if re.match(r"GenerationMonitor: (step \d+:|\d+ rounds? of )", m)]


def fit(tmp_path, console_mode="rounds", logger=None, max_steps=4):
    monitor = GenerationMonitor(["ab", "hello"], every_n_train_steps=2, generation=GEN, console=console_mode)
    t = trainer(tmp_path, [monitor], max_steps=max_steps,
                **({"logger": logger} if logger is not None else {}))
    t.fit(TinyLM())
    return t


def test_a_line_per_round_and_where_the_samples_are_at_the_end(tmp_path, console):
    t = fit(tmp_path)
    *rounds, end = ours(console)
    steps = [int(ROUND.fullmatch(line).group(1)) for line in rounds]
    assert steps == [0, 2, 4]  # the train-end round falls on step 4, already sampled
    for line in rounds:
        seconds, rate = float(ROUND.fullmatch(line).group(2)), float(ROUND.fullmatch(line).group(3))
        # Both rounded to two significant digits (whole numbers from 10 up).
        assert seconds > 0 and rate == pytest.approx(2 * GEN["max_new_tokens"] / seconds, rel=0.1)
    log_dir = t.logger.log_dir
    first, show, board = end.splitlines()
    assert first == f"GenerationMonitor: 3 rounds of samples in {log_dir}/samples.jsonl"
    assert board == f"  in TensorBoard: tensorboard --logdir {t.logger.root_dir}"
    # The printed command works as printed.
    command = shlex.split(show.removeprefix("  in a terminal: "))
    assert command[:2] == ["lightning-gen", "show"] and main(command[1:] + ["--width", "100"]) == 0


def test_the_first_sample_of_each_round_on_request(tmp_path, console, capsys):
    t = fit(tmp_path, "first_sample", max_steps=2)
    records = [json.loads(line) for line in open(f"{t.logger.log_dir}/samples.jsonl", encoding="utf-8")]
    firsts = {r["step"]: r for r in records if r["index"] == 0}
    rounds = ours(console)[:-1]
    assert len(rounds) == len(firsts) == 2
    for line in rounds:
        head, sample = line.split("\n")
        record = firsts[int(ROUND.fullmatch(head).group(1))]
        # Made visible by the viewers' rule (tested in tests/text): ⏎ for a newline, · for a space ending the text.
        assert sample == f"  '{plain(visible(record['prompt']))}' → '{plain(visible(record['completion']))}'"


def test_csv_logger_end_line_names_the_csv_file(tmp_path, console):
    t = fit(tmp_path, logger=CSVLogger(str(tmp_path), name="csv"), max_steps=1)
    end = ours(console)[-1].splitlines()
    assert end[0] == f"GenerationMonitor: 2 rounds of samples in {t.logger.log_dir}/samples.jsonl"
    assert end[-1] == f"  as CSV: {t.logger.log_dir}/samples.csv"


def test_off_prints_nothing(tmp_path, console):
    fit(tmp_path, "off", max_steps=2)
    assert ours(console) == []


def test_console_argument_is_checked():
    with pytest.raises(ValueError, match=r"`console` must be one of 'rounds', 'first_sample', 'off', got 'loud'"):
        GenerationMonitor(["ab"], console="loud")


def test_tensorboard_flag_for_runs_past_its_default_of_100_text_events():
    from lightning_gen.monitor.console import end_lines

    logger = TensorBoardLogger("logs", name="run")
    assert end_lines(100, None, [logger], tag="s")[-1] == "  in TensorBoard: tensorboard --logdir logs/run"
    assert end_lines(101, None, [logger], tag="s")[-1].endswith("--logdir logs/run --samples_per_plugin text=101")


# ----------------------------------------------------------------- above the progress bar, in a real terminal
BAR_RUN = """
import sys, time
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from tiny import TinyLM, trainer
from lightning_gen import GenerationMonitor

class Slow(TinyLM):  # slow enough that the bar is drawn between rounds
    def training_step(self, batch, batch_idx):
        time.sleep(0.1)
        return super().training_step(batch, batch_idx)

bar = TQDMProgressBar(refresh_rate=1) if sys.argv[1] == "tqdm" else RichProgressBar(refresh_rate=1)
monitor = GenerationMonitor(["ab", "hello"], every_n_train_steps=2, generation={"max_new_tokens": 5, "do_sample": True})
trainer(sys.argv[2], [monitor, bar], max_steps=6, enable_progress_bar=True).fit(Slow())
"""


def screen(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw`` (scrollback kept): carriage returns, newlines, cursor up and line
    erasure applied, colours and other sequences dropped; enough for what TQDM and Rich write."""
    import re

    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if token == "\r":
            col = 0
        elif token == "\n":
            row += 1
            lines += [""] * (row + 1 - len(lines))
        elif token.startswith("\x1b["):
            count = int(re.sub(r"\D", "", token[2:-1]) or 1)
            if token[-1] == "A":
                row = max(0, row - count)
            elif token[-1] == "K":  # erase the line (2K) or its end (K)
                lines[row] = "" if token == "\x1b[2K" else lines[row][:col]
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token):]
            col += len(token)
    return [line.rstrip() for line in lines]


@pytest.mark.parametrize("bar", ["tqdm", "rich"])
def test_round_lines_print_above_the_progress_bar_in_a_terminal(tmp_path, bar):
    """In a pseudo-terminal, as a user sees it: each round's line on a line of its own, the bar on another."""
    import os
    import sys
    from pathlib import Path

    from pseudo_terminal import run_on_a_terminal

    tests = str(Path(__file__).parents[1])
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(TERM="xterm-256color", PYTHONPATH=os.pathsep.join([tests, env.get("PYTHONPATH", "")]))
    raw, code, _ = run_on_a_terminal([sys.executable, "-c", BAR_RUN, bar, str(tmp_path)], rows=30, columns=120,
                                     env=env, cwd=tmp_path, stderr_too=True)
    assert code == 0, raw.decode(errors="replace")[-3000:]
    lines = screen(raw.decode())
    rounds = [line for line in lines if "GenerationMonitor: step" in line]
    assert [int(ROUND.fullmatch(line).group(1)) for line in rounds] == [0, 2, 4, 6], "\n".join(lines)
    end = lines.index(f"GenerationMonitor: 4 rounds of samples in {Path('tb', 'version_0', 'samples.jsonl')}")
    assert lines[end + 1] == f"  in a terminal: lightning-gen show {Path('tb', 'version_0')}"
    bars = [line for line in lines if "6/6" in line]
    assert bars and all("GenerationMonitor" not in line for line in bars), "\n".join(lines)
