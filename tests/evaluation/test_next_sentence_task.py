"""The example's task (``examples/next_sentence.py``): made from the held-out text only, the same every time, each
true choice the actual rest of its sentence, distractors of similar length from other paragraphs; and it loads as
a `multiple_choice` task within the example's 128-character context."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

from data import CharTokenizer, default_corpus  # noqa: E402
from next_sentence import held_out_paragraphs, next_sentence_rows  # noqa: E402

from lightning_gen.evaluation.tasks import load_tasks  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    return next_sentence_rows()


def test_questions_come_from_the_held_out_text_and_are_the_same_every_time(rows):
    assert rows == next_sentence_rows() and len(rows) >= 50
    held_out = held_out_paragraphs()
    assert default_corpus().rstrip().endswith(held_out[-1].rstrip())  # the corpus' last paragraphs, never trained on
    for row in rows:
        truth = row["choices"][row["gold"]]
        assert any(paragraph.startswith(f"{row['query']} {truth}") for paragraph in held_out)
        assert len(set(row["choices"])) == 4
        assert all(2 / 3 <= len(choice) / len(truth) <= 3 / 2 for choice in row["choices"])
    assert {row["gold"] for row in rows} == {0, 1, 2, 3}


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the file was made from Python 3.11's pydoc topics")
def test_the_committed_file_is_what_the_script_writes(rows):
    lines = (EXAMPLES / "next_sentence.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows


def test_it_loads_as_a_multiple_choice_task_for_the_example():
    tokenizer = CharTokenizer(default_corpus())
    [task] = load_tasks([{"name": "next_sentence", "path": EXAMPLES / "next_sentence.jsonl",
                          "type": "multiple_choice"}], tokenizer=tokenizer, context_length=128)
    assert task.random_baseline == 0.25 and len(task) >= 50
