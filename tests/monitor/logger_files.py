"""What the W&B and MLflow loggers wrote, read back from disk: an offline W&B run's records and tables, an MLflow
run's artifacts folder."""

from __future__ import annotations

import glob
import json
import os
import struct
import time
from pathlib import Path


def mlflow_artifacts(logger) -> Path:
    (found,) = glob.glob(os.path.join(logger.save_dir, "*", logger.run_id, "artifacts"))
    return Path(found)


def wandb_records(run_dir: Path):
    """The protobuf records of an offline run's ``run-*.wandb`` file (a LevelDB-style log of 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunk = 7, b""  # after the header: magic, version
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos: pos + 7]) if left >= 7 else (0, 0, 0)
        if length == 0 and kind == 0:  # block padding
            pos += left
            continue
        if pos + 7 + length > len(data):  # still being written
            return
        chunk += data[pos + 7: pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def finished_run_records(run_dir: Path, timeout: float = 30.0) -> list:
    """The run's records once its ``exit`` record is on disk: `wandb.finish` can return before the file is."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(wandb_records(run_dir))
        if records and records[-1].WhichOneof("record_type") == "exit" or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def wandb_tables(run_dir: Path, key: str) -> dict[int, dict]:
    """trainer/global_step → the increment of the table ``key`` logged at that step (its new rows), read from the
    files the run wrote; asserts that every increment belongs to one INCREMENTAL table, numbered in order."""
    tables = {}
    for record in finished_run_records(run_dir):
        if record.WhichOneof("record_type") != "history":
            continue
        row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        if f"{key}/path" in row:
            assert row[f"{key}/_type"] == "incremental-table-file" and row[f"{key}/log_mode"] == "INCREMENTAL"
            assert row[f"{key}/increment_num"] == len(tables)  # one table, increment after increment
            assert len(row[f"{key}/previous_increments_paths"]) == len(tables)
            table = json.loads((run_dir / "files" / row[f"{key}/path"]).read_text(encoding="utf-8"))
            tables[row["trainer/global_step"]] = table
    return tables


def offline_run_dir(tmp_path) -> Path:
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    return run_dir
