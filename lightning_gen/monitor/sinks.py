"""Where samples go: one small writer per logger kind that can show text, and a JSON Lines file beside them.

Each sink shows the samples with its logger's native text API (TensorBoard text, a W&B table, MLflow artifacts,
a CSV file next to ``metrics.csv``); `sinks_for` picks them for the trainer's loggers. Scalars are not a sink's
business: the monitor logs those through ``logger.log_metrics`` for every logger.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from typing import Any, Protocol

from lightning_gen.text.records import RECORDS_FILE, prompt_tag, sample_record, tag_width
from lightning_gen.text.rendering import markdown_escape, overview_table, sample_markdown
from lightning_gen.text.samples import Sample
from lightning_gen.text.tables import OPTIONAL_TEXT_COLUMNS, sample_table, text_columns

__all__ = [
    "CSVSink",
    "JsonlSink",
    "MLflowSink",
    "SampleSink",
    "TensorBoardSink",
    "WandbSink",
    "sinks_for",
]

CSV_FILENAME = "samples.csv"
CSV_COLUMNS = ("step", "tag", "index", "prompt", "completion", *OPTIONAL_TEXT_COLUMNS)


class SampleSink(Protocol):
    """Writes one round of samples at a training step.

    Files are opened and closed at every write, so a sink holds nothing to close.
    """

    def write(self, step: int, samples: Sequence[Sample], *, tag: str) -> None: ...


def _jsonl(step: int, samples: Sequence[Sample], tag: str) -> str:
    return "".join(
        json.dumps(sample_record(step, i, s, tag=tag), ensure_ascii=False) + "\n" for i, s in enumerate(samples)
    )


# ----------------------------------------------------------------- one sink per logger kind
class TensorBoardSink:
    """TensorBoard text: one tag per prompt (its history across steps) and one overview table per step.

    Tags are ``{tag}/prompt_00`` ... and ``{tag}/all``; the text is escaped so it shows verbatim.
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def write(self, step: int, samples: Sequence[Sample], *, tag: str) -> None:
        writer = self.logger.experiment
        width = tag_width(len(samples))
        for i, sample in enumerate(samples):
            writer.add_text(prompt_tag(tag, i, width), sample_markdown(sample), global_step=step)
        writer.add_text(f"{tag}/all", overview_table(samples), global_step=step)
        writer.flush()


class WandbSink:
    """A W&B table ``{tag}/table`` per step: columns step, index, prompt, completion (greedy, reference, metrics).

    Logged through ``WandbLogger.log_table``, which goes through ``log_metrics``: the table's row carries
    ``trainer/global_step``, the x-axis Lightning defines for every key. Passing ``step=`` to ``wandb.log`` would
    not do: Lightning's own calls advance W&B's internal step past the global step, and W&B drops rows logged at a
    step lower than its current one.
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def write(self, step: int, samples: Sequence[Sample], *, tag: str) -> None:
        texts = text_columns(samples)
        metrics = sorted({name for s in samples for name in s.metrics})
        rows = [
            [step, i, s.prompt, *(getattr(s, c) for c in texts), *(s.metrics.get(m) for m in metrics)]
            for i, s in enumerate(samples)
        ]
        columns = ["step", "index", "prompt", *texts, *metrics]
        self.logger.log_table(key=f"{tag}/table", columns=columns, data=rows, step=step)


class MLflowSink:
    """Two run artifacts per step: ``{tag}/step_00000004.md`` (a markdown table) and ``{tag}/step_00000004.jsonl``.

    The markdown is for reading in the MLflow UI; the JSON Lines file (the ``samples.jsonl`` schema) keeps the
    exact text and token ids.
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def write(self, step: int, samples: Sequence[Sample], *, tag: str) -> None:
        client, run_id = self.logger.experiment, self.logger.run_id
        stem = f"{tag}/step_{step:08d}"
        heading = f"# {tag} at step {step}\n\n"
        client.log_text(run_id=run_id, text=heading + sample_table(samples, markdown_escape) + "\n", artifact_file=f"{stem}.md")
        client.log_text(run_id=run_id, text=_jsonl(step, samples, tag), artifact_file=f"{stem}.jsonl")


class CSVSink:
    """Rows appended to ``samples.csv`` in the CSVLogger's ``log_dir``, beside its ``metrics.csv``.

    One row per prompt per step with columns step, tag, index, prompt, completion, greedy, reference; fields are
    quoted as needed, so commas and newlines survive. A missing greedy or reference is an empty field.
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    @property
    def path(self) -> str:
        return os.path.join(self.logger.log_dir, CSV_FILENAME)

    def write(self, step: int, samples: Sequence[Sample], *, tag: str) -> None:
        path = self.path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        with open(path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            if new:
                writer.writeheader()
            for i, s in enumerate(samples):
                writer.writerow({"step": step, "tag": tag, "index": i, "prompt": s.prompt, "completion": s.completion,
                                 "greedy": s.greedy, "reference": s.reference})


class JsonlSink:
    """One JSON object a line per prompt per step, appended to ``path`` (see `sample_record` for the fields).

    The file is opened and closed at every write, so each step is on disk as soon as it is written.

    Args:
        path: The ``.jsonl`` file; its folder is created when missing.

    Example::

        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "samples.jsonl")
        >>> JsonlSink(path).write(2, [Sample("Hi", " there", [1], [2])], tag="samples")
        >>> json.loads(open(path).readline())["completion"]
        ' there'
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def write(self, step: int, samples: Sequence[Sample], *, tag: str) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(_jsonl(step, samples, tag))


def sinks_for(loggers: Sequence[Any], *, log_dir: str | None = None) -> tuple[list[SampleSink], list[str]]:
    """The sinks for the trainer's loggers, and the class names of loggers that cannot take text.

    Args:
        loggers: ``trainer.loggers``.
        log_dir: Folder for ``samples.jsonl`` (written whatever the loggers); None writes no file.

    Example::

        >>> from lightning.pytorch.loggers import CSVLogger
        >>> sinks, skipped = sinks_for([CSVLogger("logs")], log_dir="logs")
        >>> [type(s).__name__ for s in sinks], skipped
        (['CSVSink', 'JsonlSink'], [])
    """
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger

    kinds: list[tuple[type, Any]] = [
        (TensorBoardLogger, TensorBoardSink), (WandbLogger, WandbSink), (MLFlowLogger, MLflowSink),
        (CSVLogger, CSVSink),
    ]  # fmt: skip
    sinks: list[SampleSink] = []
    skipped: list[str] = []
    for logger in loggers:
        sink = next((make(logger) for kind, make in kinds if isinstance(logger, kind)), None)
        if sink is None:
            skipped.append(type(logger).__name__)
        else:
            sinks.append(sink)
    if log_dir is not None:
        sinks.append(JsonlSink(os.path.join(log_dir, RECORDS_FILE)))
    return sinks, skipped
