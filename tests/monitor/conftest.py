"""Fixtures for the monitor tests: real W&B (offline) and MLflow (a local file store) loggers under ``tmp_path``;
nothing contacts a server."""

from __future__ import annotations

import logging
import os

import pytest

# Before mlflow is imported: no usage telemetry (there is no network here anyway).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture
def mlflow_logger(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from lightning.pytorch.loggers import MLFlowLogger

    # MLflow 3 refuses the file store unless asked; its database store needs sqlalchemy, which mlflow-skinny lacks.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(experiment_name="gen", tracking_uri=f"file:{tmp_path / 'mlruns'}")


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    # WandbLogger(offline=True) rewrites WANDB_MODE; setting it here makes monkeypatch restore it afterwards.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    yield tmp_path
    wandb.finish()


class Lines(logging.Handler):
    """Every message that reaches Lightning's logger, as the user's console gets it."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def console() -> Lines:
    """The monitors' console lines, read where they are written: Lightning's logger. Not ``caplog``: Lightning's
    logger stops propagating to the root logger when it is imported before the root has a handler, and only pytest 9.2+
    attaches ``caplog`` to such loggers."""
    lines = Lines()
    lightning = logging.getLogger("lightning.pytorch")
    lightning.addHandler(lines)
    yield lines
    lightning.removeHandler(lines)
