"""One record per run: two trainings into one directory stay two runs, for every logger, and the viewer lists both.

The second run is shorter than the first, so a merged file would splice its steps into the first run's history.
"""

from __future__ import annotations

import json

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from logger_files import wandb_tables
from tiny import TinyLM, trainer

from lightning_gen import GenerationMonitor
from lightning_gen.viewer.cli import main
from lightning_gen.viewer.runs import load_records

GEN = {"max_new_tokens": 4, "do_sample": True}
PROMPTS = ["ab", "cd"]
STEPS = {4: [0, 2, 4], 2: [0, 2]}  # max_steps → the sampled steps


def fit(tmp_path, logger, max_steps):
    monitor = GenerationMonitor(PROMPTS, every_n_train_steps=2, generation=GEN)
    t = trainer(tmp_path, [monitor], max_steps=max_steps, logger=logger)
    t.fit(TinyLM())
    return monitor._records_dir


def steps_of(path) -> list[tuple[int, int]]:
    with open(path, encoding="utf-8") as f:
        return [(r["step"], r["index"]) for r in map(json.loads, f)]


def assert_two_runs(root, first_dir, second_dir):
    """Each run's records file holds its own steps only, and `load_records`/`show` list the runs apart."""
    assert first_dir != second_dir
    assert sorted(p.parent.as_posix() for p in root.rglob("samples.jsonl")) == sorted([first_dir, second_dir])
    assert steps_of(f"{first_dir}/samples.jsonl") == [(s, i) for s in STEPS[4] for i in range(2)]
    assert steps_of(f"{second_dir}/samples.jsonl") == [(s, i) for s in STEPS[2] for i in range(2)]
    runs = {}
    for r in load_records(root):
        runs.setdefault(r.run, set()).add(r.step)
    assert sorted(map(sorted, runs.values())) == [STEPS[2], STEPS[4]]
    return sorted(runs)


def test_tensorboard_two_version_folders(tmp_path, capsys):
    first = fit(tmp_path, TensorBoardLogger(str(tmp_path), name="tb"), 4)
    second = fit(tmp_path, TensorBoardLogger(str(tmp_path), name="tb"), 2)
    assert (first, second) == (str(tmp_path / "tb" / "version_0"), str(tmp_path / "tb" / "version_1"))
    assert assert_two_runs(tmp_path, first, second) == ["tb/version_0", "tb/version_1"]
    capsys.readouterr()
    assert main(["show", str(tmp_path), "--width", "100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ━")[0] for line in lines if line.startswith("━━ ")] == [
        "━━ run tb/version_0: 2 prompts, 3 steps (0–4)", "━━ run tb/version_1: 2 prompts, 2 steps (0–2)"]
    titles = [line.split(" ")[1:4] for line in lines if line.startswith("── ")]
    assert titles == [[f"tb/version_{run}", "·", f"samples/prompt_0{i}"] for run in range(2) for i in range(2)]


def test_csv_two_version_folders(tmp_path):
    first = fit(tmp_path, CSVLogger(str(tmp_path), name="csv"), 4)
    second = fit(tmp_path, CSVLogger(str(tmp_path), name="csv"), 2)
    assert assert_two_runs(tmp_path, first, second) == ["csv/version_0", "csv/version_1"]
    for folder, steps in ((first, STEPS[4]), (second, STEPS[2])):
        with open(f"{folder}/samples.csv", encoding="utf-8") as f:
            assert len(f.read().splitlines()) == 1 + len(steps) * len(PROMPTS)  # one CSV per run too


def test_wandb_offline_two_runs_in_one_directory(wandb_env):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    dirs = []
    for max_steps in (4, 2):
        logger = WandbLogger(save_dir=str(wandb_env), offline=True)
        dirs.append(fit(wandb_env, logger, max_steps))
        assert dirs[-1] == str(wandb_env / "lightning_logs" / logger.version)  # ModelCheckpoint's folder
        wandb.finish()  # what the end of a script does; two runs in one process need it
    assert len(assert_two_runs(wandb_env, *dirs)) == 2
    tables = [wandb_tables(run_dir, "samples/table") for run_dir in sorted((wandb_env / "wandb").glob("offline-run-*"))]
    assert sorted(map(sorted, tables)) == [STEPS[2], STEPS[4]]  # each run its own table


def test_mlflow_two_runs_in_one_store(tmp_path, mlflow_logger):
    from lightning.pytorch.loggers import MLFlowLogger

    first = fit(tmp_path, mlflow_logger, 4)
    second_logger = MLFlowLogger(experiment_name="gen", tracking_uri=mlflow_logger._tracking_uri)
    second = fit(tmp_path, second_logger, 2)
    assert first.endswith(mlflow_logger.run_id) and second.endswith(second_logger.run_id)
    assert len(assert_two_runs(tmp_path, first, second)) == 2

