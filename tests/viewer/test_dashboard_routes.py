"""Samples for TensorBoard: the plugin's routes, served by TensorBoard's own WSGI application, on records files.

The records are written by `sample_record`, the monitor's own schema; TensorBoard's application does the routing
(``/data/plugin/lightning_gen_samples/...``) and the plugin listing the frontend reads to show the tab.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from tensorboard.backend.application import TensorBoardWSGI
from tensorboard.plugins import base_plugin
from werkzeug.test import Client

from lightning_gen.text.records import RECORDS_FILE, sample_record
from lightning_gen.text.samples import Sample
from lightning_gen.text.task_records import (
    TASK_EXAMPLES_FILE,
    TASK_RECORDS_FILE,
    document_header,
    document_result,
    example_header,
    example_result,
    task_header,
    task_record,
)
from lightning_gen.viewer.tensorboard.plugin import PLUGIN_NAME, SamplesPlugin

PREFIX = f"/data/plugin/{PLUGIN_NAME}"
HOSTILE = '<script>alert(1)</script> <b>x</b> &amp; **x**'


def write_run(directory, rows):
    """A records file of ``(step, index, prompt, completion[, tag])`` rows, one JSON line each."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / RECORDS_FILE).open("a", encoding="utf-8") as out:
        for step, index, prompt, completion, *tag in rows:
            sample = Sample(prompt, completion, [1], [2, 3], metrics={"mean_logprob": -0.5 * step},
                            token_logprobs=[-0.1, -2.0])
            out.write(json.dumps(sample_record(step, index, sample, tag=tag[0] if tag else "samples")) + "\n")


@pytest.fixture
def logdir(tmp_path):
    write_run(tmp_path / "tb" / "version_0", [
        (0, 0, "Hi", " a"), (0, 1, "Yo", " b"), (10, 0, "Hi", " stale"), (10, 1, "Yo", " d"),
        (10, 0, "Hi", " c"),  # a resumed run logs step 10 again: the last line read wins
        (10, 0, "Hi", " other tag", "extra"),
    ])
    write_run(tmp_path / "hostile", [(5, 0, HOSTILE, HOSTILE)])
    (tmp_path / "tb" / "version_0" / "events.out.tfevents.1").write_bytes(b"")  # other files are ignored
    return tmp_path


def client(logdir) -> Client:
    plugin = SamplesPlugin(base_plugin.TBContext(logdir=str(logdir)))
    return Client(TensorBoardWSGI([plugin]))


def get(logdir, route, **params):
    response = client(logdir).get(f"{PREFIX}/{route}", query_string=params)
    return response.status_code, response.get_json()


def test_runs_tags_prompts_and_steps_come_from_the_records_files(logdir):
    assert get(logdir, "runs") == (200, ["hostile", "tb/version_0"])
    assert get(logdir, "tags", run="tb/version_0") == (200, ["extra", "samples"])
    assert get(logdir, "steps", run="tb/version_0") == (200, [0, 10])
    assert get(logdir, "steps", run="tb/version_0", tag="extra") == (200, [10])
    assert get(logdir, "prompts", run="tb/version_0") == (200, [
        {"index": 0, "prompt": "Hi", "reference": None, "shown": {"prompt": ["Hi"], "reference": None}},
        {"index": 1, "prompt": "Yo", "reference": None, "shown": {"prompt": ["Yo"], "reference": None}}])


def test_samples_of_one_prompt_one_step_or_several_runs(logdir):
    code, records = get(logdir, "samples", run="tb/version_0")
    assert code == 200
    assert [(r["index"], r["step"], r["completion"]) for r in records] == [
        (0, 0, " a"), (0, 10, " c"), (1, 0, " b"), (1, 10, " d")]
    assert records[0]["metrics"] == {"mean_logprob": -0.0}
    assert records[0]["token_logprobs"] == [-0.1, -2.0] and records[0]["completion_ids"] == [2, 3]
    _, one = get(logdir, "samples", run="tb/version_0", prompt="1", step="10")
    assert [(r["run"], r["completion"]) for r in one] == [("tb/version_0", " d")]
    response = client(logdir).get(f"{PREFIX}/samples?run=tb/version_0&run=hostile&prompt=0")
    assert [(r["run"], r["step"]) for r in response.get_json()] == [("tb/version_0", 0), ("tb/version_0", 10),
                                                                     ("hostile", 5)]


def test_hostile_text_travels_as_json_text(logdir):
    response = client(logdir).get(f"{PREFIX}/samples?run=hostile")
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # no browser reads it as HTML
    assert response.get_json()[0]["completion"] == HOSTILE


@pytest.mark.parametrize(
    ("route", "params", "message"),
    [
        ("steps", {"run": "nope"}, "`run` must be one of ['hostile', 'tb/version_0'], got 'nope'"),
        ("tags", {}, "`run` is required"),
        ("samples", {"run": "hostile", "step": "last"}, "`step` must be an integer, got 'last'"),
        ("samples", {"run": "../../etc"}, "`run` must be one of"),  # only runs found under the logdir are read
    ],
)
def test_a_bad_argument_is_a_400_that_names_it(logdir, route, params, message):
    code, body = get(logdir, route, **params)
    assert code == 400
    assert message in body["error"]


def test_the_tab_is_listed_only_when_a_records_file_exists(tmp_path):
    def listing():
        return client(tmp_path).get("/data/plugins_listing").get_json()[PLUGIN_NAME]

    assert listing()["enabled"] is False
    write_run(tmp_path / "run", [(0, 0, "Hi", " a")])
    entry = listing()
    assert entry["enabled"] is True
    assert entry["tab_name"] == "Samples"
    assert entry["loading_mechanism"] == {"type": "IFRAME", "module_path": f"{PREFIX}/index.js"}
    assert SamplesPlugin(base_plugin.TBContext(logdir=None)).is_active() is False  # --logdir_spec: no logdir


def test_a_run_that_grows_is_read_again(logdir):
    app = client(logdir)
    assert app.get(f"{PREFIX}/steps?run=hostile").get_json() == [5]
    write_run(logdir / "hostile", [(9, 0, HOSTILE, "later")])
    assert app.get(f"{PREFIX}/steps?run=hostile").get_json() == [5, 9]


def test_the_page_is_served_from_the_package_with_no_network(logdir):
    app = client(logdir)
    assets = {}
    modules = ("index.js", "views.js", "shown.js", "curve.js", "evaluations.js")
    for name, kind in (*((m, "text/javascript") for m in modules), ("style.css", "text/css")):
        response = app.get(f"{PREFIX}/{name}")
        assert response.status_code == 200
        assert response.headers["Content-Type"] == f"{kind}; charset=utf-8"
        assets[name] = response.get_data(as_text=True)
    assert "export async function render()" in assets["index.js"]
    # Every module the page imports is served.
    imported = set(re.findall(r"from '\./([\w.]+)'", "".join(assets.values())))
    assert imported and imported <= set(assets)
    page = "".join(assets.values()).replace("http://www.w3.org/2000/svg", "")  # a namespace name, not a fetch
    assert not re.search(r"https?://|//cdn|@import", page)
    # Data reaches the page as text only: no HTML sink anywhere in the page's code.
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", "".join(assets.values()))


def test_tensorboard_finds_the_plugin_through_its_entry_point(tmp_path):
    code = ("import sys; from tensorboard import default; "
            "names = [p.plugin_name for p in default.get_dynamic_plugins()]; "
            "print(names, sorted({'torch', 'transformers', 'lightning'} & set(sys.modules)))")
    # cwd: not the checkout, whose stale egg-info (if any) would hide the installed entry points.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         cwd=tmp_path)
    names, heavy = out.stdout.strip().rsplit("] ", 1)
    assert PLUGIN_NAME in names
    assert heavy == "[]"


def test_every_round_is_served_however_many(tmp_path):
    # TensorBoard's Text tab keeps 100 events per tag by default; the records keep every round.
    write_run(tmp_path / "long", [(step, 0, "Hi", f" {step}") for step in range(0, 3000, 10)])
    assert get(tmp_path, "steps", run="long") == (200, list(range(0, 3000, 10)))
    _, records = get(tmp_path, "samples", run="long", prompt="0")
    assert [r["completion"] for r in records] == [f" {step}" for step in range(0, 3000, 10)]


# ----------------------------------------------------------------- texts made visible, diffs made, steps matched
def write_records(directory, samples):
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / RECORDS_FILE).open("w", encoding="utf-8") as out:
        for step, index, sample in samples:
            out.write(json.dumps(sample_record(step, index, sample, tag="samples")) + "\n")


def test_texts_arrive_made_visible_by_the_one_rule(tmp_path):
    """The page has no rule of its own: marks, the EOS badge and each token's characters come from the plugin."""
    ended = Sample("Say", "ok\t </s>", [1], [5, 6, 7, 1], tokens=["ok", "\t", " ", "</s>"], eos=True,
                   token_logprobs=[-0.1, -3.0, -0.5], greedy="fine</s>")
    write_records(tmp_path / "run", [(0, 0, ended)])
    [record] = get(tmp_path, "samples", run="run", tokens="1")[1]
    tab = {"mark": "tab", "text": "⇥", "title": "tab"}
    space = {"mark": "space", "text": "·", "title": "trailing space"}
    eos = {"mark": "eos", "text": "EOS", "title": 'end of sequence (its text: "</s>")'}
    assert record["completion"] == "ok\t </s>"  # the record as written, beside what is shown
    assert record["shown"]["completion"] == ["ok", tab, space, eos]
    assert record["shown"]["greedy"] == ["fine", eos]  # ended too: the run's EOS text ends it
    # Token by token; the first token's log-prob was cropped from the scoring (3 log-probs for 4 tokens).
    assert record["shown"]["tokens"] == [
        {"token": 0, "id": 5, "items": ["ok"]}, {"token": 1, "id": 6, "logprob": -0.1, "items": [tab]},
        {"token": 2, "id": 7, "logprob": -3.0, "items": [space]}, {"token": 3, "id": 1, "logprob": -0.5, "items": [eos]}]
    assert get(tmp_path, "samples", run="run")[1][0]["shown"]["tokens"] is None  # only when asked for


def test_compare_diffs_the_greedy_completions_of_two_steps(tmp_path):
    write_records(tmp_path / "run", [
        (0, 0, Sample("p", "noise one", [1], [2], greedy="the cat sat")),
        (5, 0, Sample("p", "noise two", [1], [2], greedy="the dog sat")),
        (5, 1, Sample("q", "only later", [1], [2], greedy="x"))])
    code, entries = get(tmp_path, "compare", run="run", old="0", new="5")
    assert code == 200 and [(e["index"], e["diffed"]) for e in entries] == [(0, "greedy"), (1, "greedy")]
    first, second = entries
    assert first["old"]["shown"]["greedy"] == ["the ", {"op": "del", "items": ["cat"]}, " sat"]
    assert first["new"]["shown"]["greedy"] == ["the ", {"op": "add", "items": ["dog"]}, " sat"]
    assert first["new"]["shown"]["completion"] == ["noise two"]  # the sampled ones are not diffed
    assert first["similarity"] == pytest.approx(2 / 3)
    assert second["old"] is None and second["similarity"] is None  # not sampled at step 0
    code, body = get(tmp_path, "compare", run="run", old="0")
    assert code == 400 and "`new` is required" in body["error"]


def test_runs_are_compared_at_their_nearest_sampled_steps(tmp_path):
    write_run(tmp_path / "every_2", [(s, 0, "Hi", f" {s}") for s in (0, 2, 4)])
    write_run(tmp_path / "every_3", [(s, 0, "Hi", f" {s}") for s in (0, 3, 6)])
    response = client(tmp_path).get(f"{PREFIX}/samples?run=every_2&run=every_3&step=4&nearest=1")
    assert [(r["run"], r["step"]) for r in response.get_json()] == [("every_2", 4), ("every_3", 3)]
    response = client(tmp_path).get(f"{PREFIX}/samples?run=every_2&run=every_3&step=5&nearest=1")
    assert [(r["run"], r["step"]) for r in response.get_json()] == [("every_2", 4), ("every_3", 6)]
    response = client(tmp_path).get(f"{PREFIX}/samples?run=every_2&run=every_3&step=4")
    assert [(r["run"], r["step"]) for r in response.get_json()] == [("every_2", 4)]  # without it: that step only


def test_an_old_records_file_still_opens(tmp_path):
    """Records written before ``tokens``/``eos``/``greedy`` were fields: shown as they are."""
    (tmp_path / "old").mkdir()
    line = {"step": 0, "tag": "samples", "index": 0, "prompt": "Hi", "completion": " a\n", "reference": None,
            "prompt_ids": [1], "completion_ids": [2], "metrics": {}}
    (tmp_path / "old" / RECORDS_FILE).write_text(json.dumps(line) + "\n")
    [record] = get(tmp_path, "samples", run="old")[1]
    assert record["shown"] == {"completion": [" a", {"mark": "newline", "text": "⏎", "title": "newline"}],
                               "greedy": None, "tokens": None}


# ----------------------------------------------------------------- TaskMonitor's evaluations
def write_evaluations(directory, outcomes, *, headers=True):
    """An ``evaluations.jsonl`` as `TaskMonitor` writes it, from ``{step: {task: [correct or pick per example]}}``
    (``mc``: the pick among 3 choices, gold 1; ``lm``: right or not; ``docs``: bits per byte per document), and
    its headers (``headers=False``: a run written before they existed)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for step, tasks in outcomes.items():
        for task, values in tasks.items():
            if task == "mc":
                examples = [example_result(i, correct=pick == 1, prediction=pick, gold=1, correct_norm=pick == 1,
                                           loglikelihoods=[-3.0 + (j == pick) for j in range(3)])
                            for i, pick in enumerate(values)]
                acc = sum(e["correct"] for e in examples) / len(examples)
                metrics = {"acc": acc, "acc_norm": acc, "centered": (acc - 1 / 3) / (2 / 3)}
            elif task == "lm":
                examples = [example_result(i, correct=ok, loglikelihoods=[-1.0]) for i, ok in enumerate(values)]
                acc = sum(values) / len(values)
                metrics = {"acc": acc, "loss": 2.0 - acc, "centered": acc}
            else:
                examples = [document_result(i, f"doc{i}.txt", bpb) for i, bpb in enumerate(values)]
                metrics = {"bpb": sum(values) / len(values)}
            kind = {"mc": "multiple_choice", "lm": "language_modeling", "docs": "bits_per_byte"}[task]
            lines.append(task_record(step, task, kind, metrics, examples))
    (directory / TASK_RECORDS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    if headers:
        mc = [example_header(i, [(f"Q{i}: {HOSTILE}\nwhich?", f" choice {j}") for j in range(3)],
                             task_type="multiple_choice", gold=1) for i in range(4)]
        lm = [example_header(i, [(f"count {i}", f" to {i + 1}\t")], task_type="language_modeling") for i in range(4)]
        heads = [task_header("mc", "multiple_choice", mc), task_header("lm", "language_modeling", lm),
                 task_header("docs", "bits_per_byte", [document_header(i, f"doc{i}.txt") for i in range(2)])]
        (directory / TASK_EXAMPLES_FILE).write_text("".join(json.dumps(h) + "\n" for h in heads))


OUTCOMES = {0: {"mc": [0, 1, 2, 2], "lm": [False, False, True, False], "docs": [4.0, 5.0]},
            100: {"mc": [1, 0, 0, 2], "lm": [True, False, False, False], "docs": [3.0, 5.5]},
            200: {"mc": [1, 1, 1, 1], "lm": [True, True, False, True], "docs": [2.5, 4.0]}}


def test_evaluations_give_each_tasks_metrics_at_each_step_and_core(tmp_path):
    write_evaluations(tmp_path / "run", OUTCOMES)
    code, body = get(tmp_path, "evaluations", run="run")
    assert code == 200 and body["steps"] == [0, 100, 200]
    tasks = {t["task"]: t for t in body["tasks"]}
    assert [t["task"] for t in body["tasks"]] == ["mc", "lm", "docs"]
    assert [(p["step"], p["metrics"]["acc"]) for p in tasks["mc"]["points"]] == [(0, 0.25), (100, 0.25), (200, 1.0)]
    assert [p["metrics"]["bpb"] for p in tasks["docs"]["points"]] == [4.5, 4.25, 3.25]
    assert tasks["mc"]["type"] == "multiple_choice" and tasks["mc"]["examples"] == 4 and tasks["mc"]["described"]
    # core as TaskMonitor logs it: the mean centred accuracy of the tasks that have one (not bits per byte).
    expected = [((0.25 - 1 / 3) / (2 / 3) + 0.25) / 2, ((0.25 - 1 / 3) / (2 / 3) + 0.25) / 2, (1.0 + 0.75) / 2]
    assert [p["step"] for p in body["core"]] == [0, 100, 200]
    assert [p["metrics"]["core"] for p in body["core"]] == pytest.approx(expected)


def test_flips_show_each_example_learned_or_forgotten_with_its_text_made_visible(tmp_path):
    write_evaluations(tmp_path / "run", OUTCOMES)
    code, body = get(tmp_path, "flips", run="run", old="0", new="100")
    assert code == 200
    mc, lm, docs = body
    assert (mc["task"], mc["old"], mc["new"], mc["described"], mc["missing"]) == ("mc", 0, 100, True, None)
    assert [e["index"] for e in mc["learned"]] == [0] and [e["index"] for e in mc["forgotten"]] == [1]
    learned = mc["learned"][0]
    assert (learned["gold"], learned["picks"]) == (1, {"old": 0, "new": 1})
    assert learned["loglikelihoods"] == {"old": [-2.0, -3.0, -3.0], "new": [-3.0, -2.0, -3.0]}
    newline = {"mark": "newline", "text": "⏎", "title": "newline"}
    assert learned["question"] == [f"Q0: {HOSTILE}", newline, "which?"]  # the samples' rule: marks, text as text
    assert learned["options"] == [[" choice 0"], [" choice 1"], [" choice 2"]] and learned["ending"] is None
    # Examples 2 and 3 went from one wrong pick to another: not flips. By step 200 they are right.
    assert [e["index"] for e in get(tmp_path, "flips", run="run", old="0", new="200")[1][0]["learned"]] == [0, 2, 3]
    assert [e["index"] for e in lm["learned"]] == [0] and [e["index"] for e in lm["forgotten"]] == [2]
    tab = {"mark": "tab", "text": "⇥", "title": "tab"}
    assert lm["forgotten"][0]["question"] == ["count 2"] and lm["forgotten"][0]["options"] == [[" to 3", tab]]
    assert lm["forgotten"][0]["picks"] == {"old": None, "new": None}  # right when greedy decoding gives it
    assert docs["documents"] == [{"index": 0, "name": "doc0.txt", "old": 4.0, "new": 3.0},
                                 {"index": 1, "name": "doc1.txt", "old": 5.0, "new": 5.5}]
    _, [only] = get(tmp_path, "flips", run="run", old="100", new="200", task="lm")
    assert only["task"] == "lm" and [e["index"] for e in only["learned"]] == [1, 3]


def test_a_run_without_headers_shows_its_flips_by_index(tmp_path):
    """An evaluations file written before the headers existed still opens: the flips, without texts."""
    write_evaluations(tmp_path / "old", OUTCOMES, headers=False)
    _, [mc, *_] = get(tmp_path, "flips", run="old", old="0", new="100")
    assert mc["described"] is False
    assert [(e["index"], e["picks"], e["gold"], e["question"], e["options"]) for e in mc["learned"]] == [
        (0, {"old": 0, "new": 1}, 1, None, None)]


def test_runs_with_evaluations_only_are_listed_and_runs_without_have_none(tmp_path):
    write_evaluations(tmp_path / "evaluated", OUTCOMES)
    write_run(tmp_path / "sampled", [(0, 0, "Hi", " a")])
    assert client(tmp_path).get("/data/plugins_listing").get_json()[PLUGIN_NAME]["enabled"] is True
    assert get(tmp_path, "runs") == (200, ["evaluated", "sampled"])
    assert get(tmp_path, "evaluations", run="sampled") == (200, {"steps": [], "core": [], "tasks": []})
    assert get(tmp_path, "samples", run="evaluated") == (200, [])
    assert get(tmp_path, "tags", run="evaluated") == (200, [])
    # A torn last line (a run killed mid-write) is skipped; the rest is read.
    with (tmp_path / "evaluated" / TASK_RECORDS_FILE).open("a") as out:
        out.write('{"step": 300, "task": "mc", "ty')
    assert get(tmp_path, "evaluations", run="evaluated")[1]["steps"] == [0, 100, 200]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"run": "run", "old": "0"}, "`new` is required: an evaluated step (see /evaluations)"),
        ({"run": "run", "old": "0", "new": "100", "task": "nope"}, "`task` must be one of ['mc', 'lm', 'docs']"),
        ({"run": "nope", "old": "0", "new": "100"}, "`run` must be one of ['run'], got 'nope'"),
    ],
)
def test_a_bad_flips_argument_is_a_400_that_names_it(tmp_path, params, message):
    write_evaluations(tmp_path / "run", OUTCOMES)
    code, body = get(tmp_path, "flips", **params)
    assert code == 400 and message in body["error"]


def test_a_step_without_a_tasks_record_is_named(tmp_path):
    write_evaluations(tmp_path / "run", {0: {"mc": [0, 1, 1, 1]}, 100: {"mc": [1, 1, 1, 1], "lm": [True] * 4}})
    _, [mc, lm] = get(tmp_path, "flips", run="run", old="0", new="100")
    assert [e["index"] for e in mc["learned"]] == [0]
    assert lm["missing"] == "no evaluation of lm at step 0" and lm["learned"] == lm["forgotten"] == []


def test_a_real_runs_evaluations_are_what_tensorboard_logged(tmp_path):
    """TaskMonitor in a real Trainer: the route's curves are the scalars it logged (core included), and each
    flipped example's text is its line of the task file."""
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tiny import Module, trainer

    from lightning_gen import TaskMonitor

    words = ["red apple", "blue sky", "green leaf", "black night", "white snow", "yellow sun"]
    rows = [{"query": f"{w.split()[0]}!", "choices": [words[(i + 2 * (k - i % 3)) % 6].split()[1] for k in range(3)],
             "gold": i % 3} for i, w in enumerate(words)]  # each question its own choices, the gold among them
    (tmp_path / "colours.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "held.txt").write_text("the red apple and the blue sky. " * 4)
    monitor = TaskMonitor([{"name": "colours", "path": str(tmp_path / "colours.jsonl"), "type": "multiple_choice"},
                           {"name": "held", "path": str(tmp_path / "held.txt"), "type": "bits_per_byte"}],
                          every_n_train_steps=2)
    run = trainer(tmp_path / "logs", [monitor], max_steps=6)
    module = Module()
    run.fit(module)
    events = EventAccumulator(run.logger.log_dir, size_guidance={"scalars": 0})
    events.Reload()
    logged = {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}
    with torch.no_grad():  # six steps change few answers: a jolt changes some, and a round at step 100 sees it
        generator = torch.Generator().manual_seed(0)
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator))
    monitor.run_now(run, step=100)
    _, body = get(tmp_path / "logs", "evaluations", run="tb/version_0")
    assert body["steps"] == [0, 2, 4, 6, 100]
    # The fit's rounds, read before the round run by hand after it.
    served = {f"eval/{t['task']}/{name}": {p["step"]: p["metrics"][name] for p in t["points"] if p["step"] <= 6}
              for t in body["tasks"] for name in t["points"][0]["metrics"]}
    served["eval/core"] = {p["step"]: p["metrics"]["core"] for p in body["core"] if p["step"] <= 6}
    assert served == {tag: pytest.approx(values, rel=1e-6) for tag, values in logged.items() if tag in served}
    assert set(served) == {"eval/colours/acc", "eval/colours/acc_norm", "eval/colours/centered", "eval/held/bpb",
                           "eval/core"}
    _, flipped = get(tmp_path / "logs", "flips", run="tb/version_0", old="6", new="100")
    examples = [e for task in flipped for e in task["learned"] + task["forgotten"]]
    assert examples
    for example in examples:
        row = rows[example["index"]]
        assert example["question"] == [row["query"]] and example["options"] == [[f" {c}"] for c in row["choices"]]
        assert example["gold"] == row["gold"]
