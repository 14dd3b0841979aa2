"""Sinks with real loggers: each writes, and what the logger put on disk is read back.

W&B runs offline and MLflow on a local file store, both under ``tmp_path``; nothing contacts a server.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings
from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from logger_files import mlflow_artifacts, offline_run_dir, wandb_tables
from tiny import TinyLM, text_events, trainer

from lightning_gen import GenerationMonitor
from lightning_gen.monitor.sinks import (
    CSVSink,
    JsonlSink,
    MLflowSink,
    TensorBoardSink,
    WandbSink,
    sinks_for,
)
from lightning_gen.text.records import sample_record
from lightning_gen.text.rendering import markdown_escape
from lightning_gen.text.samples import Sample
from lightning_gen.text.tables import sample_table


def markdown_table(samples):
    """The markdown table MLflow gets: the one table builder, with plain markdown escaping."""
    return sample_table(samples, markdown_escape)

GEN = {"max_new_tokens": 5, "do_sample": True}
PROMPTS = ["ab", "hello"]
# Text that breaks naive writers: CSV separators and quotes, newlines, markdown/HTML, non-ASCII.
HOSTILE = Sample(
    prompt='say, "hi"\nthen |go|',
    completion=" <eos> *x*\r\n\tend, ü",
    prompt_ids=[1, 2, 3],
    completion_ids=[4, 5],
    reference="ref, with\nnewline",
    greedy="gr`eedy`",
    metrics={"length": 2.0, "mean_logprob": float("nan")},
    token_logprobs=[-0.5, float("-inf")],
)
PLAIN = Sample(prompt="ab", completion="cd", prompt_ids=[0, 1], completion_ids=[2, 3])


class NoTextLogger(Logger):
    """A logger with no text API: the sinks skip it."""

    name, version = "none", 0

    def log_metrics(self, metrics, step=None):
        pass

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def fit(tmp_path, logger, max_steps=4, prompts=PROMPTS):
    monitor = GenerationMonitor(prompts, every_n_train_steps=2, generation=GEN)
    t = trainer(tmp_path, [monitor], max_steps=max_steps, logger=logger)
    t.fit(TinyLM())
    return t


# ----------------------------------------------------------------- sinks_for
def test_sinks_for_picks_one_sink_per_logger_skips_the_rest_and_adds_jsonl(tmp_path):
    tb, csv_logger = TensorBoardLogger(str(tmp_path)), CSVLogger(str(tmp_path))
    sinks, skipped = sinks_for([tb, NoTextLogger(), csv_logger])
    assert [type(s) for s in sinks] == [TensorBoardSink, CSVSink] and skipped == ["NoTextLogger"]
    assert sinks[0].logger is tb and sinks[1].logger is csv_logger
    sinks, skipped = sinks_for([], log_dir=str(tmp_path))
    assert [type(s) for s in sinks] == [JsonlSink] and skipped == []
    assert sinks[0].path == os.path.join(str(tmp_path), "samples.jsonl")


# ----------------------------------------------------------------- JSON Lines
def test_jsonl_sink_appends_one_strict_json_object_per_prompt_per_step(tmp_path):
    path = tmp_path / "new" / "samples.jsonl"
    sink = JsonlSink(path)
    sink.write(2, [HOSTILE, PLAIN], tag="samples")
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2  # on disk after each step
    sink.write(4, [PLAIN], tag="other")
    text = path.read_text(encoding="utf-8")
    assert "ü" in text  # ensure_ascii=False
    records = [json.loads(line, parse_constant=pytest.fail) for line in text.splitlines()]  # no NaN tokens
    assert records[0] == {
        "step": 2, "tag": "samples", "index": 0, "prompt": HOSTILE.prompt, "completion": HOSTILE.completion,
        "greedy": HOSTILE.greedy, "reference": HOSTILE.reference, "prompt_ids": [1, 2, 3], "completion_ids": [4, 5],
        "metrics": {"length": 2.0, "mean_logprob": None}, "token_logprobs": [-0.5, None], "tokens": None,
        "eos": None,
    }  # fmt: skip
    assert records[1] == sample_record(2, 1, PLAIN, tag="samples")
    assert records[1]["greedy"] is None and records[1]["reference"] is None
    keys = [(r["step"], r["tag"], r["index"]) for r in records]
    assert keys == [(2, "samples", 0), (2, "samples", 1), (4, "other", 0)]


def test_jsonl_end_to_end_in_the_version_folder(tmp_path):
    t = fit(tmp_path, TensorBoardLogger(str(tmp_path), name="tb"), max_steps=3)
    assert t.logger.log_dir == str(tmp_path / "tb" / "version_0")
    assert sorted(tmp_path.rglob("samples.jsonl")) == [tmp_path / "tb" / "version_0" / "samples.jsonl"]
    records = [json.loads(line) for line in (tmp_path / "tb" / "version_0" / "samples.jsonl").read_text().splitlines()]
    assert [(r["step"], r["index"]) for r in records] == [(0, 0), (0, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    for r in records:
        assert r["prompt"] == PROMPTS[r["index"]] and len(r["completion_ids"]) == GEN["max_new_tokens"]
        assert r["prompt_ids"] == [ord(c) - ord("a") for c in r["prompt"]]
        # The monitor scores every sample: one log-prob per completion token, whose mean is `mean_logprob`.
        assert len(r["token_logprobs"]) == len(r["completion_ids"]) and all(x < 0 for x in r["token_logprobs"])
        assert sum(r["token_logprobs"]) / len(r["token_logprobs"]) == pytest.approx(r["metrics"]["mean_logprob"])


@pytest.mark.parametrize("options", [{"logger": False}, {"fast_dev_run": 2}], ids=["no logger", "fast_dev_run"])
def test_no_log_directory_no_records_file(tmp_path, options):
    monitor = GenerationMonitor(PROMPTS, every_n_train_steps=1, generation=GEN)
    with pytest.warns(UserWarning, match="no attached logger can show text"):
        trainer(tmp_path, [monitor], **options).fit(TinyLM())
    assert monitor.last_round_step is not None and monitor._records_dir is None
    assert list(tmp_path.rglob("samples.*")) == []


# ----------------------------------------------------------------- CSV
def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_sink_round_trips_commas_quotes_and_newlines(tmp_path):
    logger = CSVLogger(str(tmp_path), name="csv", version=0)
    sink = CSVSink(logger)
    sink.write(3, [HOSTILE, PLAIN], tag="samples")
    sink.write(5, [PLAIN], tag="samples")
    rows = read_csv(Path(logger.log_dir) / "samples.csv")
    assert list(rows[0]) == ["step", "tag", "index", "prompt", "completion", "greedy", "reference", "length",
                             "mean_logprob", "reference_loss"]
    assert [(r["step"], r["index"]) for r in rows] == [("3", "0"), ("3", "1"), ("5", "0")]
    # newline="" on both sides keeps the "\r\n" inside a field exact.
    assert rows[0]["prompt"] == HOSTILE.prompt and rows[0]["completion"] == HOSTILE.completion
    assert rows[0]["greedy"] == HOSTILE.greedy and rows[0]["reference"] == HOSTILE.reference
    assert rows[1]["greedy"] == "" and rows[1]["reference"] == ""
    # Per-sample numbers: the length always; a NaN or an unscored metric is an empty field.
    assert [(r["length"], r["mean_logprob"], r["reference_loss"]) for r in rows] == [("2", "", "")] * 3


def test_csv_end_to_end_in_the_loggers_folder(tmp_path):
    t = fit(tmp_path, CSVLogger(str(tmp_path), name="csv", version=0))
    log_dir = Path(t.logger.log_dir)
    assert log_dir == tmp_path / "csv" / "version_0" and (log_dir / "hparams.yaml").exists()
    rows = read_csv(log_dir / "samples.csv")
    assert [(int(r["step"]), r["prompt"]) for r in rows] == [(s, p) for s in (0, 2, 4) for p in PROMPTS]
    assert all(len(r["completion"]) == GEN["max_new_tokens"] and r["tag"] == "samples" for r in rows)
    # The monitor scores every sample: its mean log-prob is there beside its text.
    records = {(r["step"], r["index"]): r for r in map(json.loads, (log_dir / "samples.jsonl").read_text().splitlines())}
    for r in rows:
        record = records[int(r["step"]), int(r["index"])]
        assert int(r["length"]) == len(record["completion_ids"]) == GEN["max_new_tokens"]
        assert float(r["mean_logprob"]) == pytest.approx(record["metrics"]["mean_logprob"]) and r["reference_loss"] == ""


# ----------------------------------------------------------------- TensorBoard (its text is tested in test_monitor)
def test_tensorboard_sink_one_tag_per_prompt_and_an_overview(tmp_path):
    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    TensorBoardSink(logger).write(7, [PLAIN, PLAIN], tag="s")
    events = text_events(logger.log_dir)
    assert sorted(events) == ["s/all", "s/prompt_00", "s/prompt_01"]
    assert all(sorted(by_step) == [7] for by_step in events.values())


# ----------------------------------------------------------------- markdown
def test_markdown_table_escapes_what_markdown_would_eat():
    table = markdown_table([HOSTILE, PLAIN])
    lines = table.splitlines()
    assert lines[0] == "| # | prompt | completion | greedy | reference |" and len(lines) == 4
    # The leading space is kept as &nbsp; (a table cell would trim it); every markdown character is escaped.
    prompt, completion = r'say, "hi"<br>then \|go\|', r"&nbsp;\<eos\> \*x\*<br>" + "\tend, ü"
    assert lines[2] == rf"| 0 | {prompt} | {completion} | gr\`eedy\` | ref, with<br>newline |"
    assert lines[3] == "| 1 | ab | cd |  |  |"


# ----------------------------------------------------------------- MLflow
def test_mlflow_sink_writes_markdown_and_jsonl_artifacts(mlflow_logger):
    MLflowSink(mlflow_logger).write(3, [HOSTILE, PLAIN], tag="samples")
    folder = mlflow_artifacts(mlflow_logger) / "samples"
    assert {"step_00000003.jsonl", "step_00000003.md"} <= {p.name for p in folder.iterdir()}
    markdown = (folder / "step_00000003.md").read_text(encoding="utf-8")
    assert markdown == "# samples at step 3\n\n" + markdown_table([HOSTILE, PLAIN]) + "\n"
    records = [json.loads(line) for line in (folder / "step_00000003.jsonl").read_text(encoding="utf-8").splitlines()]
    assert records == [sample_record(3, i, s, tag="samples") for i, s in enumerate([HOSTILE, PLAIN])]


def test_mlflow_log_table_grows_by_a_round_per_step(mlflow_logger):
    pytest.importorskip("pandas")  # log_table's own dependency
    sink = MLflowSink(mlflow_logger)
    sink.write(3, [HOSTILE, PLAIN], tag="samples")
    sink.write(5, [PLAIN], tag="samples")
    table = json.loads((mlflow_artifacts(mlflow_logger) / "samples" / "samples.json").read_text(encoding="utf-8"))
    assert table["columns"] == ["step", "index", "prompt", "completion", "greedy", "reference", "length",
                                "mean_logprob"]
    assert [row[:4] for row in table["data"]] == [[3, 0, HOSTILE.prompt, HOSTILE.completion], [3, 1, "ab", "cd"],
                                                  [5, 0, "ab", "cd"]]
    assert table["data"][0][4:7] == [HOSTILE.greedy, HOSTILE.reference, 2]
    # MLflow lists it as a table of the run (what its UI shows and compares across runs).
    tags = mlflow_logger.experiment.get_run(mlflow_logger.run_id).data.tags
    assert {"path": "samples/samples.json", "type": "table"} in json.loads(tags["mlflow.loggedArtifacts"])


def test_mlflow_without_pandas_warns_once_and_keeps_the_artifacts(mlflow_logger, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # what `import pandas` meets where mlflow-skinny lacks it
    sink = MLflowSink(mlflow_logger)
    with pytest.warns(UserWarning, match="MLflow's `log_table` needs pandas"):
        sink.write(3, [PLAIN], tag="samples")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sink.write(5, [PLAIN], tag="samples")
    names = sorted(p.name for p in (mlflow_artifacts(mlflow_logger) / "samples").iterdir())
    assert names == ["step_00000003.jsonl", "step_00000003.md", "step_00000005.jsonl", "step_00000005.md"]


def test_mlflow_end_to_end(tmp_path, mlflow_logger):
    fit(tmp_path, mlflow_logger)
    folder = mlflow_artifacts(mlflow_logger) / "samples"
    assert sorted(p.name for p in folder.glob("*.md")) == [f"step_{s:08d}.md" for s in (0, 2, 4)]
    for step in (0, 2, 4):
        records = [json.loads(line) for line in (folder / f"step_{step:08d}.jsonl").read_text().splitlines()]
        assert [(r["step"], r["prompt"]) for r in records] == [(step, p) for p in PROMPTS]
        shown = [Sample(r["prompt"], r["completion"], r["prompt_ids"], r["completion_ids"]) for r in records]
        assert (folder / f"step_{step:08d}.md").read_text() == f"# samples at step {step}\n\n{markdown_table(shown)}\n"


# ----------------------------------------------------------------- W&B
def test_wandb_sink_grows_one_table_at_the_global_step(wandb_env):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(wandb_env), offline=True)
    sink = WandbSink(logger)
    logger.log_metrics({"loss": 1.0}, step=5)  # W&B's own step moves on; the table must still land at step 3
    sink.write(3, [HOSTILE, PLAIN], tag="samples")
    sink.write(9, [PLAIN], tag="samples")
    wandb.finish()
    tables = wandb_tables(offline_run_dir(wandb_env), "samples/table")
    assert sorted(tables) == [3, 9]
    columns = ["step", "index", "prompt", "completion", "greedy", "reference", "length", "mean_logprob"]
    assert tables[3]["columns"] == tables[9]["columns"] == columns  # fixed at the first round
    assert tables[3]["data"] == [[3, 0, HOSTILE.prompt, HOSTILE.completion, HOSTILE.greedy, HOSTILE.reference, 2, None],
                                 [3, 1, "ab", "cd", None, None, 2, None]]
    assert tables[9]["data"] == [[9, 0, "ab", "cd", None, None, 2, None]]  # only the new rows


def test_wandb_end_to_end(wandb_env):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    fit(wandb_env, WandbLogger(save_dir=str(wandb_env), offline=True))
    wandb.finish()
    tables = wandb_tables(offline_run_dir(wandb_env), "samples/table")
    assert sorted(tables) == [0, 2, 4]
    for step, table in tables.items():
        assert table["columns"] == ["step", "index", "prompt", "completion", "length", "mean_logprob"]
        assert all(row[4] == GEN["max_new_tokens"] and row[5] < 0 for row in table["data"])  # every sample scored
        assert [row[:3] for row in table["data"]] == [[step, i, p] for i, p in enumerate(PROMPTS)]
        assert all(len(row[3]) == GEN["max_new_tokens"] for row in table["data"])
