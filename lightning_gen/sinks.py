"""Where samples go: one small writer per logger kind that can show text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from lightning_gen.rendering import Sample, overview_table, sample_markdown

__all__ = ["SampleSink", "TensorBoardSink", "sinks_for"]


class SampleSink(Protocol):
    """Writes one round of samples at a training step."""

    def write(self, step: int, samples: Sequence[Sample], *, tag: str) -> None: ...


class TensorBoardSink:
    """TensorBoard text: one tag per prompt (its history across steps) and one overview table per step.

    Tags are ``{tag}/prompt_00`` ... and ``{tag}/all``; the text is escaped so it shows verbatim.
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def write(self, step: int, samples: Sequence[Sample], *, tag: str) -> None:
        writer = self.logger.experiment
        width = max(2, len(str(len(samples) - 1)))
        for i, sample in enumerate(samples):
            writer.add_text(f"{tag}/prompt_{i:0{width}d}", sample_markdown(sample), global_step=step)
        writer.add_text(f"{tag}/all", overview_table(samples), global_step=step)
        writer.flush()


def sinks_for(loggers: Sequence[Any]) -> tuple[list[SampleSink], list[str]]:
    """The sinks for the trainer's loggers, and the names of loggers that cannot take text."""
    from lightning.pytorch.loggers import TensorBoardLogger

    sinks: list[SampleSink] = []
    skipped: list[str] = []
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            sinks.append(TensorBoardSink(logger))
        else:
            skipped.append(type(logger).__name__)
    return sinks, skipped
