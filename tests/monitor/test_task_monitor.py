"""`TaskMonitor` in a real Trainer: a user's GPT in ``self.model``, tiny task files, a real TensorBoard logger.

Its metrics at a step are the evaluation of the model as it is at that step (`score_tasks`, checked against lm-eval
in tests/evaluation), logged to TensorBoard at every scheduled step and written per example to the run's
``evaluations.jsonl``; training is bit-identical with and without it; it shares the probe's checks.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny import GPT, SYMBOLS, CharTokenizer, Module, trainer

from lightning_gen import GenerationMonitor, TaskMonitor
from lightning_gen.evaluation.tasks import evaluation_metrics, load_tasks, score_tasks
from lightning_gen.monitor.probe import ProbeError
from lightning_gen.text.task_records import TASK_EXAMPLES_FILE, TASK_RECORDS_FILE

SENTENCES = ["the cat sat on the mat.", "a dog ran in the park.", "we read a good book.", "it is cold out today.",
             "she sang a short song.", "he made a cup of tea.", "they ate some bread.", "you won the first game."]


@pytest.fixture
def task_list(tmp_path):
    """A YAML task list over four tiny files, one of each type, paths relative to the list."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    rows = [{"query": s.split(" ", 2)[0] + " " + s.split(" ", 2)[1], "gold": i % 3,
             "choices": [s.split(" ", 2)[2] if j == i % 3 else SENTENCES[(i + j + 1) % 8].split(" ", 2)[2]
                         for j in range(3)]} for i, s in enumerate(SENTENCES)]
    (folder / "choices.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    schema = [{"context_options": [s[:8], SENTENCES[(i + 3) % 8][:8]], "continuation": s[8:], "gold": 0}
              for i, s in enumerate(SENTENCES)]
    (folder / "schema.jsonl").write_text("".join(json.dumps(r) + "\n" for r in schema))
    lm = [{"context": s[:-5], "continuation": s[-5:]} for s in SENTENCES]
    (folder / "ending.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lm))
    (folder / "held_out.txt").write_text(" ".join(SENTENCES * 4))
    (folder / "tasks.yaml").write_text(
        "tasks:\n"
        "  - {name: choices, path: choices.jsonl, type: multiple_choice, num_fewshot: 1}\n"
        "  - {name: schema, path: schema.jsonl, type: schema}\n"
        "  - {name: ending, path: ending.jsonl, type: language_modeling}\n"
        "  - {name: held_out, path: held_out.txt, type: bits_per_byte}\n")
    return folder / "tasks.yaml"


def _scalars(log_dir) -> dict[str, dict[int, float]]:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def _fit(tmp_path, callbacks, module=None, **kwargs):
    module = module if module is not None else Module()
    run = trainer(tmp_path, callbacks, max_steps=4, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.fit(module)
    return module, run, [str(w.message) for w in caught if "Monitor" in str(w.message)]


def test_metrics_are_logged_at_every_scheduled_step_and_each_example_is_recorded(tmp_path, task_list, console):
    monitor = TaskMonitor(str(task_list), every_n_train_steps=2)
    module, run, warned = _fit(tmp_path, [monitor])
    assert warned == []
    scalars = _scalars(run.logger.log_dir)
    for name in ("choices/acc", "choices/acc_norm", "choices/centered", "schema/acc", "ending/acc", "ending/loss",
                 "held_out/bpb", "core", "seconds"):
        assert sorted(scalars[f"eval/{name}"]) == [0, 2, 4], name
    records = [json.loads(line) for line in open(f"{run.logger.log_dir}/{TASK_RECORDS_FILE}")]
    assert sorted({(r["step"], r["task"]) for r in records}) == [
        (step, task) for step in (0, 2, 4) for task in ("choices", "ending", "held_out", "schema")]
    last = {r["task"]: r for r in records if r["step"] == 4}
    assert [e["index"] for e in last["choices"]["examples"]] == list(range(8))
    assert last["choices"]["metrics"]["acc"] == pytest.approx(scalars["eval/choices/acc"][4])
    lines = [m for m in console.messages if m.startswith("TaskMonitor")]
    assert "context 64 (found by probing)" in lines[0] and "tasks choices (8), schema (8)" in lines[0]
    assert lines[-2].startswith("TaskMonitor: step 4: choices acc ")
    log_dir = run.logger.log_dir
    assert lines[-1].splitlines()[:2] == [f"TaskMonitor: 3 rounds of evaluation in {log_dir}/{TASK_RECORDS_FILE}",
                                          f"  in a terminal: lightning-gen show {log_dir} --evaluations"]


def test_what_each_example_is_is_written_once_per_run_beside_the_records(tmp_path, task_list):
    """A record says "example 3 flipped"; the run's header says what example 3 is: the question without its
    few-shot prefix, the choices as scored, the gold; a held-out document's name."""
    _, run, _ = _fit(tmp_path, [TaskMonitor(str(task_list), every_n_train_steps=2)])
    folder = Path(run.logger.log_dir)
    headers = [json.loads(line) for line in (folder / TASK_EXAMPLES_FILE).read_text().splitlines()]
    assert [(h["task"], h["type"]) for h in headers] == [  # once, though three rounds were written
        ("choices", "multiple_choice"), ("schema", "schema"), ("ending", "language_modeling"),
        ("held_out", "bits_per_byte")]
    header = {h["task"]: h for h in headers}
    rows = [json.loads(line) for line in (task_list.parent / "choices.jsonl").read_text().splitlines()]
    assert header["choices"]["num_fewshot"] == 1
    assert header["choices"]["examples"] == [
        {"index": i, "context": row["query"], "choices": [" " + c for c in row["choices"]], "gold": row["gold"]}
        for i, row in enumerate(rows)]
    assert header["schema"]["examples"][3] == {"index": 3, "contexts": [SENTENCES[3][:8], SENTENCES[6][:8]],
                                               "continuation": " " + SENTENCES[3][8:], "gold": 0}
    assert header["ending"]["examples"][0] == {"index": 0, "context": SENTENCES[0][:-5],
                                               "continuation": " " + SENTENCES[0][-5:]}
    assert header["held_out"]["examples"] == [{"index": 0, "name": "held_out.txt"}]
    records = [json.loads(line) for line in (folder / TASK_RECORDS_FILE).read_text().splitlines()]
    for record in records:  # every index a record names, the header describes
        assert {e["index"] for e in record["examples"]} == {e["index"] for e in header[record["task"]]["examples"]}


def test_a_round_measures_the_model_as_it_is_at_that_step(tmp_path, task_list):
    monitor = TaskMonitor(str(task_list), every_n_train_steps=2)
    module, run, _ = _fit(tmp_path, [monitor])
    records = monitor.run_now(run, step=100)
    tasks = load_tasks(str(task_list), tokenizer=CharTokenizer(SYMBOLS, eos=True), context_length=64)
    expected = evaluation_metrics(tasks, score_tasks(module.model, tasks, context_length=64))
    got = {f"{r['task']}/{name}": value for r in records for name, value in r["metrics"].items()}
    assert got == pytest.approx({k: v for k, v in expected.items() if k != "core"})


def test_training_is_bit_identical_with_and_without_both_monitors(tmp_path, task_list):
    with_them, _, _ = _fit(tmp_path / "a", [TaskMonitor(str(task_list), every_n_train_steps=1),
                                            GenerationMonitor(["the cat"], every_n_train_steps=2)])
    without, _, _ = _fit(tmp_path / "b", [])
    assert all(torch.equal(a, b) for a, b in zip(with_them.state_dict().values(), without.state_dict().values()))
    assert with_them.state_dict().keys() == without.state_dict().keys()


def test_a_model_that_returns_the_last_position_only_is_refused_before_step_one(tmp_path, task_list):
    class LastOnly(GPT):
        def forward(self, idx):
            logits = super().forward(idx)
            return logits if self.training else logits[:, -1:]

    run = trainer(tmp_path, [TaskMonitor(str(task_list), every_n_train_steps=2)], max_steps=2)
    with pytest.raises(ProbeError, match="last position only.*`adapter`"):
        run.fit(Module(LastOnly()))
    assert run.global_step == 0


def test_a_bad_task_list_fails_when_the_monitor_is_built(tmp_path):
    with pytest.raises((ValueError, FileNotFoundError), match="type"):
        TaskMonitor([{"name": "x", "path": str(tmp_path / "x.jsonl"), "type": "multiple_choise"}])
    with pytest.raises(TypeError, match="`every_n_train_steps`"):
        TaskMonitor([{"name": "x", "path": "x.jsonl", "type": "schema"}], every_n_train_steps="5")


def test_a_failing_round_warns_and_training_goes_on(tmp_path, task_list):
    class BreaksLater(GPT):
        def forward(self, idx):
            if not self.training and torch.is_grad_enabled() is False and self.broken:
                raise RuntimeError("bad update")
            return super().forward(idx)

    network = BreaksLater()
    network.broken = False
    module = Module(network)
    monitor = TaskMonitor(str(task_list), every_n_train_steps=2, evaluate_on_train_end=False)
    run = trainer(tmp_path, [monitor], max_steps=4)
    run.fit(module)
    network.broken = True
    monitor.last_round_step = None
    with pytest.warns(UserWarning, match="TaskMonitor: evaluation at step 4 failed with RuntimeError: bad update"):
        monitor._maybe_run(run)
    assert len(SYMBOLS) == 67
