"""What the monitor says on the console: one line per round, and where the samples are when training ends.

While a progress bar is on the screen, lines go through it (`ProgressBar.print`: TQDM's ``tqdm.write``, Rich's
live console), which prints them above the bar instead of glued to its end. Otherwise they go through
Lightning's own logging on global rank 0 (`rank_zero_info`, the channel of ModelCheckpoint's and EarlyStopping's
messages), so they show where Lightning's do and a logging level silences both. The texts are built by pure
functions, tested as they are; samples are made visible by `lightning_gen.text.visible`, the viewers' rule.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from lightning_gen.monitor.sinks import CSV_FILENAME
from lightning_gen.text.records import RECORDS_FILE
from lightning_gen.text.task_records import TASK_RECORDS_FILE
from lightning_gen.text.samples import Sample
from lightning_gen.text.visible import one_line, split_eos

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["ConsoleMode", "end_lines", "round_line", "say"]

#: ``"rounds"``: a line per round; ``"first_sample"``: that line and the round's first sample; ``"off"``: silent.
ConsoleMode = Literal["rounds", "first_sample", "off"]

# TensorBoard's default loader keeps 100 text events per tag (reservoir sampling); past that it drops rounds.
_TENSORBOARD_TEXT_KEPT = 100
_SAMPLE_CHARS = 120


def _bar_on_screen(bar: Any) -> bool:
    """Whether ``bar.print`` shows a line now. TQDM's writes only while one of its bars is open (not before the
    first, as at the round of step 0, nor after the last), so a line it would drop goes to the log instead."""
    from lightning.pytorch.callbacks import TQDMProgressBar

    if not bar.is_enabled:
        return False
    if not isinstance(bar, TQDMProgressBar):
        return True
    for name in ("train_progress_bar", "val_progress_bar", "test_progress_bar", "predict_progress_bar"):
        try:
            if not getattr(bar, name).disable:
                return True
        except TypeError:  # that bar was never opened
            continue
    return False


def say(message: str, trainer: pl.Trainer | None = None) -> None:
    """One line on the console, from global rank 0: above ``trainer``'s progress bar while one is on the screen,
    else through Lightning's logging."""
    from lightning.pytorch.utilities import rank_zero_info

    bar = getattr(trainer, "progress_bar_callback", None)
    if bar is not None and trainer.is_global_zero and _bar_on_screen(bar):
        bar.print(message)
    else:
        rank_zero_info(message)


def _number(value: float) -> str:
    """Two significant digits below 10, whole numbers above: 0.052, 3.2, 190, 1108 (never 1.9e+02)."""
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def round_line(step: int, samples: Sequence[Sample], seconds: float, *, first_sample: bool = False) -> str:
    """The line of one round: step, samples, wall time and new tokens per second (and its first sample).

    Example::

        >>> samples = [Sample("Hi", " there\\nyou", [0], [1, 2, 3, 4])] * 6
        >>> round_line(50, samples, 0.08)
        'GenerationMonitor: step 50: 6 samples, 0.08 s, 300 tok/s'
        >>> print(round_line(50, samples, 3.2, first_sample=True))
        GenerationMonitor: step 50: 6 samples, 3.2 s, 7.5 tok/s
          'Hi' → ' there⏎you'
        >>> round_line(100, samples, 190.4)
        'GenerationMonitor: step 100: 6 samples, 190 s, 0.13 tok/s'
    """
    tokens = sum(len(s.completion_ids) for s in samples)
    rate = f", {_number(tokens / seconds)} tok/s" if seconds > 0 else ""
    count = f"{len(samples)} sample{'s' * (len(samples) != 1)}"
    line = f"GenerationMonitor: step {step}: {count}, {_number(seconds)} s{rate}"
    if first_sample and samples:
        first = samples[0]
        completion, eos_text = split_eos(first.completion, eos=first.eos, tokens=first.tokens)
        line += f"\n  '{one_line(first.prompt, 40)}' → '{one_line(completion, _SAMPLE_CHARS, eos_text=eos_text)}'"
    return line


def _shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute; quoted for a shell."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return shlex.quote(relative if not relative.startswith(os.pardir) else absolute)


def end_lines(rounds: int, records_dir: str | None, loggers: Sequence[Any], *, tag: str,
              evaluations: bool = False) -> list[str]:
    """The lines at the end of training: how many rounds, where the records and each logger keep them, how to open
    them; ``evaluations`` for `TaskMonitor`'s (its scalars are the loggers' own, so only TensorBoard is named: the
    Samples tab's Evaluations view).

    Example::

        >>> print("\\n".join(end_lines(13, "lightning_logs/version_3", [], tag="samples")))
        GenerationMonitor: 13 rounds of samples in lightning_logs/version_3/samples.jsonl
          in a terminal: lightning-gen show lightning_logs/version_3
        >>> print("\\n".join(end_lines(7, "lightning_logs/version_3", [], tag="eval", evaluations=True)))
        TaskMonitor: 7 rounds of evaluation in lightning_logs/version_3/evaluations.jsonl
          in a terminal: lightning-gen show lightning_logs/version_3 --evaluations
    """
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger

    label, file, what, flag = (("TaskMonitor", TASK_RECORDS_FILE, "evaluation", " --evaluations") if evaluations
                               else ("GenerationMonitor", RECORDS_FILE, tag, ""))
    where = _shown_path(os.path.join(records_dir, file)) if records_dir is not None else "no file (no logger)"
    lines = [f"{label}: {rounds} round{'s' * (rounds != 1)} of {what} in {where}"]
    if records_dir is not None:
        lines.append(f"  in a terminal: lightning-gen show {_shown_path(records_dir)}{flag}")
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            command = f"tensorboard --logdir {_shown_path(logger.root_dir)}"
            if rounds > _TENSORBOARD_TEXT_KEPT and not evaluations:  # the Text tab keeps 100 of them, at random
                command += f" --samples_per_plugin text={rounds}"
            lines.append(f"  in TensorBoard: {command}")
        elif evaluations:
            continue
        elif isinstance(logger, CSVLogger):
            lines.append(f"  as CSV: {_shown_path(os.path.join(logger.log_dir, CSV_FILENAME))}")
        elif isinstance(logger, WandbLogger):
            url = getattr(logger.experiment, "url", None)
            lines.append(f"  in W&B: the table {tag}/table of run {logger.version}" + (f" ({url})" if url else ""))
        elif isinstance(logger, MLFlowLogger):
            lines.append(f"  in MLflow: the table {tag}/samples.json among the artifacts of run {logger.run_id}")
    return lines
