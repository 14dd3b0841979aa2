"""Where samples go: one small writer per logger kind that can show text, and a JSON Lines file beside them.

Each sink shows the samples with its logger's native text API (TensorBoard text, one growing W&B table, an MLflow
table, a CSV file next to ``metrics.csv``); `sinks_for` picks them for the trainer's loggers, and `run_log_dir`
says where the run's own ``samples.jsonl`` goes. Scalars are not a sink's business: the monitor logs those through
``logger.log_metrics`` for every logger.
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
    "run_log_dir",
    "sample_metrics",
    "sinks_for",
]

CSV_FILENAME = "samples.csv"
#: The per-sample numbers beside each sample's text: its length in tokens, and what a scored round measured.
METRIC_COLUMNS = ("length", "mean_logprob", "reference_loss")
CSV_COLUMNS = ("step", "tag", "index", "prompt", "completion", *OPTIONAL_TEXT_COLUMNS, *METRIC_COLUMNS)


class SampleSink(Protocol):
    """Writes one round of samples at a training step.

    Files are opened and closed at every write, so a sink holds nothing to close.
    """

    def write(self, step: int, samples: Sequence[Sample], *, tag: str) -> None: ...


def sample_metrics(sample: Sample) -> dict[str, float | None]:
    """The numbers of one sample that tables show beside it: ``length`` (tokens, the EOS included) and the
    sample's own metrics (``mean_logprob``, ``reference_loss`` when the round was scored); NaN becomes None.

    Example::

        >>> sample_metrics(Sample("a", "bc", [0], [1, 2], metrics={"mean_logprob": -0.5}))
        {'length': 2, 'mean_logprob': -0.5}
    """
    measured = {name: (None if value != value else value) for name, value in sample.metrics.items()}  # NaN != NaN
    return {"length": len(sample.completion_ids)} | {name: v for name, v in measured.items() if name != "length"}


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
    """One W&B table ``{tag}/table`` for the whole run, growing by a round's rows at each sampled step.

    The table is INCREMENTAL (``wandb.Table(log_mode="INCREMENTAL")``): each log uploads only the new rows, and
    W&B shows the run's table as one, with a step slider; group it by ``prompt`` to read one prompt's history.
    Columns, fixed at the first round: step, index, prompt, completion (greedy, reference when there are any),
    then `sample_metrics`. Logged through ``WandbLogger.log_metrics``, so the row carries ``trainer/global_step``,
    the x-axis Lightning defines for every key; passing ``step=`` to ``wandb.log`` would not do, since Lightning's
    own calls advance W&B's internal step past the global step and W&B drops rows logged below it.
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self._tables: dict[str, Any] = {}  # tag -> its wandb.Table, across the run
        self._columns: dict[str, list[str]] = {}

    def write(self, step: int, samples: Sequence[Sample], *, tag: str) -> None:
        import wandb

        if tag not in self._tables:
            metrics = list(dict.fromkeys(name for s in samples for name in sample_metrics(s)))
            self._columns[tag] = ["step", "index", "prompt", *text_columns(samples), *metrics]
            self._tables[tag] = wandb.Table(columns=self._columns[tag], log_mode="INCREMENTAL")
        table, columns = self._tables[tag], self._columns[tag]
        for i, s in enumerate(samples):
            values = {"step": step, "index": i, "prompt": s.prompt, "completion": s.completion, "greedy": s.greedy,
                      "reference": s.reference, **sample_metrics(s)}
            table.add_data(*(values.get(column) for column in columns))
        self.logger.log_metrics({f"{tag}/table": table}, step=step)


class MLflowSink:
    """An MLflow table ``{tag}/samples.json`` (``log_table``, one row per prompt per step, appended every round)
    and, per step, ``{tag}/step_00000004.md`` (a markdown table) and ``{tag}/step_00000004.jsonl``.

    The table is what MLflow's UI lists and compares across runs (columns step, index, prompt, completion,
    greedy, reference and `sample_metrics`); the markdown is for reading one round; the JSON Lines file (the
    ``samples.jsonl`` schema) keeps the exact text, token ids and per-token log-probs. ``log_table`` needs
    pandas (a dependency of the full ``mlflow`` package, not of ``mlflow-skinny``): without it the table is
    skipped with one warning.
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self._table = True

    def write(self, step: int, samples: Sequence[Sample], *, tag: str) -> None:
        client, run_id = self.logger.experiment, self.logger.run_id
        stem = f"{tag}/step_{step:08d}"
        heading = f"# {tag} at step {step}\n\n"
        client.log_text(run_id=run_id, text=heading + sample_table(samples, markdown_escape) + "\n",
                        artifact_file=f"{stem}.md")
        client.log_text(run_id=run_id, text=_jsonl(step, samples, tag), artifact_file=f"{stem}.jsonl")
        if self._table:
            self._log_table(client, run_id, step, samples, tag)

    def _log_table(self, client: Any, run_id: str, step: int, samples: Sequence[Sample], tag: str) -> None:
        try:
            import pandas  # noqa: F401  (log_table's own import, checked before anything is written)
        except ImportError:
            from lightning.pytorch.utilities import rank_zero_warn

            self._table = False
            rank_zero_warn("GenerationMonitor: MLflow's `log_table` needs pandas, which is not installed; the "
                           f"samples go to the `{tag}/step_*.md` and `.jsonl` artifacts only")
            return
        texts = text_columns(samples)
        metrics = list(dict.fromkeys(name for s in samples for name in sample_metrics(s)))
        rows = [{"step": step, "index": i, "prompt": s.prompt, **{c: getattr(s, c) for c in texts},
                 **{m: sample_metrics(s).get(m) for m in metrics}} for i, s in enumerate(samples)]
        data = {column: [row[column] for row in rows] for column in rows[0]} if rows else {}
        client.log_table(run_id=run_id, data=data, artifact_file=f"{tag}/samples.json")


class CSVSink:
    """Rows appended to ``samples.csv`` in the CSVLogger's ``log_dir``, beside its ``metrics.csv``.

    One row per prompt per step with columns step, tag, index, prompt, completion, greedy, reference and the
    per-sample numbers (length, mean_logprob, reference_loss: see `sample_metrics`); fields are quoted as needed,
    so commas and newlines survive. A missing value is an empty field.
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
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            for i, s in enumerate(samples):
                writer.writerow({"step": step, "tag": tag, "index": i, "prompt": s.prompt, "completion": s.completion,
                                 "greedy": s.greedy, "reference": s.reference, **sample_metrics(s)})


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


def run_log_dir(trainer: Any) -> str | None:
    """The run's own log directory, where its ``samples.jsonl`` goes; None when the run has none.

    The version folder of the first TensorBoard or CSV logger (``lightning_logs/version_3``), else the folder
    Lightning's ModelCheckpoint uses for the first logger: ``{save_dir}/{name}/{version}`` (W&B: the project and
    the run id; MLflow: the experiment and run ids; ``trainer.default_root_dir`` when the logger has no local
    ``save_dir``). A new run gets a new folder, so two runs never write to one file; a resumed run with the
    same version continues its own. No logger (``logger=False``) or ``fast_dev_run``: None, nothing is written.
    A collective (the path is broadcast from rank 0), so it must run on every process.
    """
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    path: str | None = None
    if trainer.loggers and not trainer.fast_dev_run:
        with_dir = [logger for logger in trainer.loggers if isinstance(logger, (TensorBoardLogger, CSVLogger))]
        if with_dir:
            path = with_dir[0].log_dir
        else:
            logger = trainer.loggers[0]
            version = logger.version
            if version is not None and version != "":
                version = version if isinstance(version, str) else f"version_{version}"
                path = os.path.join(logger.save_dir or trainer.default_root_dir, str(logger.name or ""), version)
    return trainer.strategy.broadcast(path)


def sinks_for(loggers: Sequence[Any], *, log_dir: str | None = None) -> tuple[list[SampleSink], list[str]]:
    """The sinks for the trainer's loggers, and the class names of loggers that cannot take text.

    Args:
        loggers: ``trainer.loggers``.
        log_dir: Folder for ``samples.jsonl`` (written whatever the loggers, see `run_log_dir`); None writes none.

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
