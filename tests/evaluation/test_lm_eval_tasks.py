"""lm-eval tasks named in a task list (``type: lm_eval``): through `load_tasks`, `score_tasks` and
`evaluation_metrics` the numbers of lm-eval's own ``simple_evaluate`` (with ``HFLM(logits_cache=False)``) on the
same local tasks, sharded like any task, recorded per document; generation tasks, groups, unknown names and data
that is not local refused at load, and a helpful ImportError without lm-eval."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import subprocess
import sys

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

from lightning_gen.evaluation.tasks import (
    ScoredTask,
    evaluation_metrics,
    load_tasks,
    merge_scores,
    score_tasks,
)
from lightning_gen.lm_eval import LmEvalTask

CONTEXT = 64  # the model's n_positions: HFLM's max_length, and the windows of the rolling task


@pytest.fixture
def model(bpe):
    return tiny_gpt2(len(bpe), n_positions=CONTEXT)


@pytest.fixture
def harness_folder(tmp_path, model, bpe):
    """A folder of lm-eval task YAMLs over JSON Lines files, one task per log-likelihood output type (and one that
    generates), beside a task list that names them."""
    folder = tmp_path / "lm_eval_tasks"
    folder.mkdir()
    write_jsonl(folder / "mc.jsonl", multiple_choice_rows(12))
    write_jsonl(folder / "mc_train.jsonl", multiple_choice_rows(6, seed=5))
    write_jsonl(folder / "schema.jsonl", schema_rows(8))
    write_jsonl(folder / "lm.jsonl", greedy_lm_rows(model, bpe, 8))
    write_jsonl(folder / "docs.jsonl", [{"text": text[:400]} for text in CORPUS[5:10]])
    write_jsonl(folder / "complete.jsonl", [{"prompt": text[:60], "answer": "x"} for text in CORPUS[10:12]])
    mc_data = {"test": folder / "mc.jsonl", "train": folder / "mc_train.jsonl"}
    write_lm_eval_task(folder, "local_mc", mc_data, "multiple_choice", training_split="train", num_fewshot=2)
    write_lm_eval_task(folder, "local_mc_any_shots", mc_data, "multiple_choice", training_split="train")
    write_lm_eval_task(folder, "local_schema", folder / "schema.jsonl", "schema", num_fewshot=0)
    write_lm_eval_task(folder, "local_lm", folder / "lm.jsonl", "language_modeling", metrics=["acc", "perplexity"],
                       target_delimiter="")
    write_lm_eval_task(folder, "local_docs", folder / "docs.jsonl", "bits_per_byte",
                       metrics=["word_perplexity", "byte_perplexity", "bits_per_byte"])
    write_lm_eval_task(folder, "local_complete", folder / "complete.jsonl", "generation",
                       generation_kwargs={"until": ["."], "max_gen_toks": 4})
    return folder


def _task_list(tmp_path, entries) -> os.PathLike:
    (tmp_path / "tasks.yaml").write_text("tasks:\n" + "".join(f"  - {json.dumps(e)}\n" for e in entries))
    return tmp_path / "tasks.yaml"


HARNESS_TASKS = {"mc": "local_mc", "schema": "local_schema", "lm": "local_lm", "docs": "local_docs"}


def test_metrics_equal_lm_eval_s_simple_evaluate_for_every_log_likelihood_output_type(harness_folder, tmp_path, model,
                                                                                      bpe):
    entries = [{"name": name, "type": "lm_eval", "task": task, "path": "lm_eval_tasks"}
               for name, task in HARNESS_TASKS.items()]
    tasks = load_tasks(_task_list(tmp_path, entries), tokenizer=bpe, context_length=CONTEXT)
    assert all(isinstance(task, ScoredTask) for task in tasks)
    assert [len(task) for task in tasks] == [12, 8, 8, 5]  # one item per document
    assert max(len(item) for item in tasks[3].items) > 1  # the documents span several windows
    ours = evaluation_metrics(tasks, score_tasks(model, tasks))

    lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(bpe), logits_cache=False, device="cpu", batch_size=8)
    theirs = simple_evaluate(model=lm, tasks=list(HARNESS_TASKS.values()), verbosity="ERROR", bootstrap_iters=0,
                             task_manager=TaskManager(include_path=str(harness_folder), include_defaults=False))
    for name, task in HARNESS_TASKS.items():
        expected = {key.removesuffix(",none"): value for key, value in theirs["results"][task].items()
                    if key.endswith(",none") and "_stderr" not in key}
        got = {key.removeprefix(f"{name}/"): value for key, value in ours.items() if key.startswith(f"{name}/")}
        assert set(got) - {"centered"} == set(expected), name
        for metric, value in expected.items():
            assert got[metric] == pytest.approx(value, rel=1e-4, abs=1e-4), (name, metric)
    assert 0 < ours["lm/acc"] < 1  # some continuations are the greedy ones, some are not
    assert "docs/centered" not in ours  # perplexities have no chance level
    chance = sum(1 / len(row["choices"]) for row in multiple_choice_rows(12)) / 12
    assert ours["mc/centered"] == pytest.approx((ours["mc/acc"] - chance) / (1 - chance))
    assert ours["schema/centered"] == pytest.approx((ours["schema/acc"] - 0.5) / 0.5)
    assert ours["lm/centered"] == ours["lm/acc"]
    assert ours["core"] == pytest.approx(sum(ours[f"{n}/centered"] for n in ("mc", "schema", "lm")) / 3)


def test_shards_merge_into_the_unsharded_metrics_and_records_hold_each_document(harness_folder, model, bpe):
    entries = [{"name": "mc", "type": "lm_eval", "task": "local_mc", "path": harness_folder},
               {"name": "docs", "type": "lm_eval", "task": "local_docs", "path": harness_folder},
               {"name": "lm", "type": "lm_eval", "task": "local_lm", "path": harness_folder},
               {"name": "own", "type": "language_modeling", "path": harness_folder / "lm.jsonl"}]
    tasks = load_tasks(entries, tokenizer=bpe, context_length=CONTEXT)
    whole = score_tasks(model, tasks)
    parts = [score_tasks(model, tasks, shard=(rank, 2)) for rank in range(2)]
    assert sorted(parts[0]["mc"]) == [0, 2, 4, 6, 8, 10] and sorted(parts[1]["docs"]) == [1, 3]
    merged = merge_scores(parts)
    assert evaluation_metrics(tasks, merged) == pytest.approx(evaluation_metrics(tasks, whole), rel=1e-5, abs=1e-5)
    with pytest.raises(ValueError, match=r"task 'mc': scores lack 6 of its 12 items"):
        evaluation_metrics(tasks, merge_scores(parts[:1]))

    mc, docs, lm = (task.record(3, merged[task.name]) for task in tasks[:3])
    json.dumps([mc, docs, lm], allow_nan=False)
    assert (mc["step"], mc["task"]) == (3, "mc")
    assert [mc["type"], docs["type"], lm["type"]] == ["multiple_choice", "bits_per_byte", "language_modeling"]
    assert lm["metrics"]["acc"] == sum(entry["correct"] for entry in lm["examples"]) / 8 > 0
    assert [entry["index"] for entry in mc["examples"]] == list(range(12))
    assert mc["metrics"]["acc"] == pytest.approx(sum(entry["correct"] for entry in mc["examples"]) / 12)
    assert mc["metrics"]["acc_norm"] == pytest.approx(sum(entry["correct_norm"] for entry in mc["examples"]) / 12)
    for entry, row in zip(mc["examples"], multiple_choice_rows(12)):
        assert len(entry["loglikelihoods"]) == len(row["choices"])
        assert entry["correct"] == (entry["prediction"] == row["gold"])
    texts = [text[:400] for text in CORPUS[5:10]]
    expected = [-sum(ll for ll, _ in merged["docs"][i]) / math.log(2) / len(t.encode()) for i, t in enumerate(texts)]
    assert [(entry["name"], entry["bits_per_byte"]) for entry in docs["examples"]] == [
        (f"local_docs[{i}]", pytest.approx(value)) for i, value in enumerate(expected)]


def test_few_shots_and_limits_are_lm_eval_s_drawn_the_same_everywhere_and_leave_the_random_streams(
        harness_folder, bpe):
    def load(**entry):
        [task] = load_tasks([{"name": "t", "type": "lm_eval", "path": harness_folder, **entry}], tokenizer=bpe,
                            context_length=CONTEXT)
        return task

    random.seed(7)
    torch.manual_seed(7)
    streams = random.getstate(), torch.random.get_rng_state()
    default = load(task="local_mc")  # the YAML's num_fewshot: 2
    assert (random.getstate(), torch.equal(torch.random.get_rng_state(), streams[1])) == (streams[0], True)
    assert isinstance(default, LmEvalTask) and default.harness.get_config("num_fewshot") == 2
    context = default.instances[0][0].args[0]
    assert context.count("\n\n") == 2 and context.endswith(multiple_choice_rows(12)[0]["query"])
    assert load(task="local_mc").items == default.items  # every process builds the same requests
    assert load(task="local_mc_any_shots", num_fewshot=2).items == default.items
    assert load(task="local_mc_any_shots").items != default.items  # no num_fewshot anywhere: zero shots
    first = load(task="local_mc", max_examples=5)  # lm-eval's limit: its first documents
    assert len(first) == 5 and first.items == default.items[:5]


def test_what_cannot_be_scored_offline_is_refused_at_load_and_named(harness_folder, tmp_path, bpe):
    def load(**entry):
        return load_tasks([{"name": "t", "type": "lm_eval", "path": harness_folder, **entry}], tokenizer=bpe,
                          context_length=CONTEXT)

    with pytest.raises(ValueError, match=r"task 't': lm-eval's 'local_complete' has output type 'generate_until'.*"
                                         r"`LightningGenLM` and `lm_eval.simple_evaluate`"):
        load(task="local_complete")
    (harness_folder / "hub.yaml").write_text("task: local_hub\ndataset_path: someone/some_dataset\n"
                                             "output_type: multiple_choice\ntest_split: test\n")
    with pytest.raises(ValueError, match=r"task 't': the data of lm-eval's 'local_hub' is not local "
                                         r"\(`dataset_path: someone/some_dataset` is no local file or folder\)"):
        load(task="local_hub")
    write_lm_eval_task(harness_folder, "local_gone", tmp_path / "gone.jsonl", "multiple_choice")
    with pytest.raises(ValueError, match=r"the data of lm-eval's 'local_gone' is not local \(data file '.*gone"
                                         r".jsonl' does not exist\)"):
        load(task="local_gone")
    (harness_folder / "group.yaml").write_text("group: local_group\ntask: [local_mc, local_schema]\n")
    with pytest.raises(ValueError, match=r"'local_group' is a group of tasks \['local_mc', 'local_schema'\]"):
        load(task="local_group")
    with pytest.raises(ValueError, match=r"'local_schema' fixes num_fewshot: 0 in its YAML; leave `num_fewshot` "
                                         r"out, got 1"):
        load(task="local_schema", num_fewshot=1)
    with pytest.raises(FileNotFoundError, match=r"task 't': `path` must be a folder of lm-eval task YAMLs"):
        load(task="local_mc", path=harness_folder / "mc.jsonl")
    with pytest.raises(ValueError, match=r"`tasks` task 0 lacks \['task'\]"):
        load_tasks([{"name": "t", "type": "lm_eval"}], tokenizer=bpe, context_length=CONTEXT)
    with pytest.raises(ValueError, match=r"task 't': `task` names an lm-eval task and needs `type: lm_eval`"):
        load_tasks([{"name": "t", "type": "schema", "path": "x", "task": "local_mc"}], tokenizer=bpe,
                   context_length=CONTEXT)
    with pytest.raises(ValueError, match=r"an lm-eval task takes its delimiters from its YAML"):
        load(task="local_mc", continuation_delimiter="\n")
    # Last, as it indexes lm-eval's own thousands of tasks (seconds) to look for close names.
    with pytest.raises(ValueError, match=r"task 't': `task` must name an lm-eval task in '.*lm_eval_tasks' or "
                                         r"lm-eval's own, got 'local_mcq'; close names: \['local_mc'"):
        load(task="local_mcq")


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                          env={**os.environ, **env})


_CHARS = """
class Chars:
    eos_token_id = 0
    def encode(self, text): return [ord(c) % 64 for c in text]
    def decode(self, ids): return "".join(chr(i + 32) for i in ids)
"""


def test_without_lm_eval_only_lm_eval_entries_fail_and_name_the_extra(tmp_path):
    (tmp_path / "doc.txt").write_text("Some held-out text.")
    code = f"""import sys; sys.modules['lm_eval'] = None
from lightning_gen.evaluation.tasks import load_tasks
{_CHARS}
[task] = load_tasks([{{"name": "own", "type": "bits_per_byte", "path": {str(tmp_path / 'doc.txt')!r}}}],
                    tokenizer=Chars(), context_length=16)
print("own task loaded", len(task))
load_tasks([{{"name": "hs", "type": "lm_eval", "task": "hellaswag"}}], tokenizer=Chars(), context_length=16)
"""
    out = _run(code)
    assert "own task loaded 2" in out.stdout, out.stderr
    assert out.returncode != 0
    assert "ImportError: task 'hs' is an lm-eval task ('hellaswag')" in out.stderr
    assert "pip install 'lightning-gen[lm-eval]'" in out.stderr


def test_in_offline_mode_a_hub_dataset_missing_from_the_cache_is_not_local(harness_folder, tmp_path):
    (harness_folder / "hub.yaml").write_text("task: local_hub\ndataset_path: someone/some_dataset\n"
                                             "output_type: multiple_choice\ntest_split: test\n")
    code = f"""from lightning_gen.evaluation.tasks import load_tasks
{_CHARS}
load_tasks([{{"name": "t", "type": "lm_eval", "task": "local_hub", "path": {str(harness_folder)!r}}}],
           tokenizer=Chars(), context_length=16)
"""
    out = _run(code, HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    assert out.returncode != 0
    assert "ValueError: task 't': the data of lm-eval's 'local_hub' is not local: " in out.stderr, out.stderr
