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
    modules = ("index.js", "views.js", "shown.js", "curve.js")
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
