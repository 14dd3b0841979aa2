"""Tasks from files to metrics: acc and acc_norm equal lm-eval's on the same task files, sharded scores merge into
the single-process ones with every item counted once, bits per byte is lm-eval's, and the records say which
examples flipped."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from local_tasks import (
    greedy_lm_rows,
    multiple_choice_rows,
    schema_rows,
    write_jsonl,
    write_lm_eval_task,
)
from tiny import CORPUS, tiny_gpt2

from lightning_gen.evaluation.loglikelihood import loglikelihood_rolling
from lightning_gen.evaluation.tasks import (
    evaluation_metrics,
    load_tasks,
    merge_scores,
    score_tasks,
)
from lightning_gen.text.task_records import flips


@pytest.fixture
def task_files(tmp_path, bpe):
    torch.manual_seed(0)  # and the global RNG is left where the weights leave it: a test below perturbs them from there
    model = tiny_gpt2(len(bpe), n_positions=128, seed=None)
    write_jsonl(tmp_path / "mc.jsonl", multiple_choice_rows(16))
    write_jsonl(tmp_path / "schema.jsonl", schema_rows(10))
    write_jsonl(tmp_path / "lm.jsonl", greedy_lm_rows(model, bpe, 10))
    return model, tmp_path


def test_acc_and_acc_norm_equal_lm_eval_on_the_same_task_files(task_files, bpe):
    model, folder = task_files
    specs = [{"name": "mc", "path": "mc.jsonl", "type": "multiple_choice"},
             {"name": "schema", "path": "schema.jsonl", "type": "schema"},
             {"name": "lm", "path": "lm.jsonl", "type": "language_modeling", "continuation_delimiter": ""}]
    (folder / "tasks.yaml").write_text("tasks:\n" + "".join(
        f"  - {json.dumps(spec)}\n" for spec in specs), encoding="utf-8")
    tasks = load_tasks(folder / "tasks.yaml", tokenizer=bpe, context_length=128)
    ours = evaluation_metrics(tasks, score_tasks(model, tasks))

    for spec in specs:
        write_lm_eval_task(folder, f"local_{spec['name']}", folder / spec["path"], spec["type"],
                           **({"target_delimiter": ""} if spec["name"] == "lm" else {}))
    lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(bpe), logits_cache=False, device="cpu")
    results = simple_evaluate(model=lm, tasks=["local_mc", "local_schema", "local_lm"], verbosity="ERROR",
                              task_manager=TaskManager(include_path=str(folder), include_defaults=False))["results"]
    for name, metrics in (("mc", ["acc", "acc_norm"]), ("schema", ["acc", "acc_norm"]), ("lm", ["acc"])):
        for metric in metrics:
            assert ours[f"{name}/{metric}"] == pytest.approx(results[f"local_{name}"][f"{metric},none"]), (name, metric)
    assert 0 < ours["lm/acc"] < 1  # some continuations are the greedy ones, some are not


def test_shards_merge_into_the_single_process_scores(task_files, bpe):
    model, folder = task_files
    specs = [{"name": "mc", "path": folder / "mc.jsonl", "type": "multiple_choice", "num_fewshot": 2},
             {"name": "lm", "path": folder / "lm.jsonl", "type": "language_modeling"}]
    tasks = load_tasks(specs, tokenizer=bpe, context_length=128)
    whole = score_tasks(model, tasks)
    parts = [score_tasks(model, tasks, shard=(rank, 3)) for rank in range(3)]
    assert sorted(index for part in parts for index in part["mc"]) == list(range(16))
    merged = merge_scores(parts)
    assert merged.keys() == whole.keys()
    for name in whole:
        for index, item in whole[name].items():
            assert [g for _, g in merged[name][index]] == [g for _, g in item]
            assert [ll for ll, _ in merged[name][index]] == pytest.approx([ll for ll, _ in item], abs=1e-4)
    with pytest.raises(ValueError, match="item 0 was scored twice"):
        merge_scores([parts[0], parts[0]])
    with pytest.raises(ValueError, match=r"task 'mc': scores lack 10 of its 16 items"):
        evaluation_metrics(tasks, merge_scores(parts[:1]))
    metrics = evaluation_metrics(tasks, merged)
    assert metrics["core"] == pytest.approx((metrics["mc/centered"] + metrics["lm/centered"]) / 2)
    baseline = sum(1 / len(row) for row in (ex.requests for ex in tasks[0].sources)) / 16
    assert metrics["mc/centered"] == pytest.approx((metrics["mc/acc"] - baseline) / (1 - baseline))
    assert metrics["lm/loss"] > 0


def test_few_shot_examples_and_subsets_are_drawn_once_and_the_same_everywhere(task_files, bpe):
    _, folder = task_files
    spec = {"name": "mc", "path": folder / "mc.jsonl", "type": "multiple_choice", "num_fewshot": 3,
            "max_examples": 5}
    [first], [second] = (load_tasks([spec], tokenizer=bpe, context_length=None) for _ in range(2))
    assert first.items == second.items and len(first) == 5
    rows = multiple_choice_rows(16)
    for example in first.sources:
        *shots, question = example.requests[0][0].split("\n\n")
        assert question == rows[example.index]["query"] and len(shots) == 3
        solved = {f"{r['query']} {r['choices'][r['gold']]}": i for i, r in enumerate(rows)}
        assert all(solved.get(shot, example.index) != example.index for shot in shots)  # others, solved
    assert len({example.requests[0][0].split("\n\n")[0] for example in first.sources}) > 1


def test_bits_per_byte_is_lm_eval_s_over_every_document(tmp_path, bpe):
    model = tiny_gpt2(len(bpe))
    (tmp_path / "docs" / "more").mkdir(parents=True)
    texts = {"a.txt": CORPUS[3][:700], "more/b.txt": CORPUS[4][:300] + " é ü"}
    for name, text in texts.items():
        (tmp_path / "docs" / name).write_text(text, encoding="utf-8")
    [task] = load_tasks([{"name": "docs", "path": tmp_path / "docs", "type": "bits_per_byte"}], tokenizer=bpe,
                        context_length=64)
    assert len(task) > 4  # rolling windows, sharded like examples
    scores = merge_scores([score_tasks(model, [task], shard=(rank, 2)) for rank in range(2)])
    totals = loglikelihood_rolling(model, list(texts.values()), tokenizer=bpe)
    expected = -sum(totals) / math.log(2) / sum(len(t.encode("utf-8")) for t in texts.values())
    assert evaluation_metrics([task], scores) == {"docs/bpb": pytest.approx(expected, rel=1e-5)}
    record = task.record(7, scores["docs"])
    assert [(d["name"], d["bits_per_byte"]) for d in record["examples"]] == [
        (name, pytest.approx(-total / math.log(2) / len(text.encode("utf-8")), rel=1e-5))
        for (name, text), total in zip(texts.items(), totals)]


def test_records_are_strict_json_and_show_what_flipped(task_files, bpe):
    model, folder = task_files
    [task] = load_tasks([{"name": "mc", "path": folder / "mc.jsonl", "type": "multiple_choice"}], tokenizer=bpe,
                        context_length=128)
    before = task.record(0, score_tasks(model, [task])["mc"])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    after = task.record(100, score_tasks(model, [task])["mc"])
    json.dumps(before, allow_nan=False)
    assert before["metrics"]["acc"] == sum(e["correct"] for e in before["examples"]) / 16
    entry = before["examples"][0]
    assert entry["prediction"] == max(range(len(entry["loglikelihoods"])), key=entry["loglikelihoods"].__getitem__)
    changed = flips(before, after)
    assert changed["learned"] + changed["forgotten"]
    assert all(after["examples"][i]["correct"] and not before["examples"][i]["correct"] for i in changed["learned"])


def test_errors_name_the_task_the_file_the_line_and_the_field(tmp_path, bpe):
    def load(rows_or_text, **spec):
        path = tmp_path / "t.jsonl"
        path.write_text(rows_or_text if isinstance(rows_or_text, str) else "".join(
            json.dumps(r) + "\n" for r in rows_or_text))
        return load_tasks([{"name": "t", "path": path, "type": "multiple_choice", **spec}], tokenizer=bpe,
                          context_length=64)

    good = {"query": "Q", "choices": ["a", "b"], "gold": 1}
    with pytest.raises(ValueError, match=r"task 't': '.*t.jsonl' line 2: `gold` must be an index in \[0, 2\), got 2"):
        load([good, {**good, "gold": 2}])
    with pytest.raises(ValueError, match=r"line 3 is not valid JSON"):
        load(json.dumps(good) + "\n\n{oops\n")
    with pytest.raises(ValueError, match=r"line 1: `choices` must be a list of at least two non-empty strings"):
        load([{**good, "choices": ["a"]}])
    with pytest.raises(ValueError, match=r"`num_fewshot` must be less than its 2 examples, got 2"):
        load([good, good], num_fewshot=2)
    with pytest.raises(ValueError, match=r"`tasks` task 0 has unknown field\(s\) \['shots'\]"):
        load([good], shots=1)
    with pytest.raises(ValueError, match=r"task 't': `type` must be one of"):
        load([good], type="mc")
    with pytest.raises(ValueError, match=r"names more than one task \['a'\]"):
        load_tasks([{"name": "a", "path": "x", "type": "schema"}] * 2, tokenizer=bpe, context_length=64)
    (tmp_path / "tasks.yaml").write_text("tasks: 3\n")
    with pytest.raises(ValueError, match=r"must hold a mapping with a `tasks:` list"):
        load_tasks(tmp_path / "tasks.yaml", tokenizer=bpe, context_length=64)
    with pytest.raises(FileNotFoundError, match=r"task 'u': `path` must be a JSON Lines file"):
        load_tasks([{"name": "u", "path": tmp_path / "missing.jsonl", "type": "schema"}], tokenizer=bpe,
                   context_length=64)
