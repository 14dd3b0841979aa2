"""The example's tasks (``examples/held_out_tasks.py``, ``examples/tasks/``): made from the held-out text only, the
same every time, each true choice the text itself; and ``tasks.yaml`` loads within the example's 128-character
context."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

from data import CharTokenizer, default_corpus  # noqa: E402
from held_out_tasks import held_out_paragraphs, held_out_text, next_sentence_rows, word_order_rows  # noqa: E402

from lightning_gen.evaluation.tasks import load_tasks  # noqa: E402

TASKS = EXAMPLES / "tasks"


@pytest.fixture(scope="module")
def text():
    return held_out_text()


@pytest.fixture(scope="module")
def rows(text):
    return {"next_sentence": next_sentence_rows(text), "word_order": word_order_rows(text)}


def test_questions_come_from_the_held_out_text_and_are_the_same_every_time(rows, text):
    assert rows == {"next_sentence": next_sentence_rows(text), "word_order": word_order_rows(text)}
    held_out = held_out_paragraphs(text)
    assert default_corpus().rstrip().endswith(held_out[-1].rstrip())  # the corpus' last paragraphs, never trained on
    for name, task_rows in rows.items():
        assert len(task_rows) >= 90 and {row["gold"] for row in task_rows} == {0, 1, 2, 3}
        for row in task_rows:
            truth = row["choices"][row["gold"]]
            assert any(f"{row['query']} {truth}" in paragraph for paragraph in held_out), (name, row)
            assert len(set(row["choices"])) == 4
    for row in rows["word_order"]:  # the same words in other orders
        assert len({tuple(sorted(choice.split())) for choice in row["choices"]}) == 1
    for row in rows["next_sentence"]:  # other sentences' rests, of about the same length
        truth = row["choices"][row["gold"]]
        assert all(2 / 3 <= len(choice) / len(truth) <= 3 / 2 for choice in row["choices"])


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the files were made from Python 3.11's pydoc topics")
def test_the_committed_files_are_what_the_script_writes(rows, text):
    for name, task_rows in rows.items():
        lines = (TASKS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == task_rows
    assert (TASKS / "held_out.txt").read_text(encoding="utf-8") == text.replace(CharTokenizer.eos_token, "\n\n")


def test_the_task_list_loads_for_the_example():
    tokenizer = CharTokenizer(default_corpus())
    tasks = load_tasks(TASKS / "tasks.yaml", tokenizer=tokenizer, context_length=128)
    assert [(task.name, task.spec.type) for task in tasks] == [
        ("word_order", "multiple_choice"), ("next_sentence", "multiple_choice"), ("held_out", "bits_per_byte")]
    assert [task.random_baseline for task in tasks] == [0.25, 0.25, 0.0]
