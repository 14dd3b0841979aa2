"""The task headers: what each evaluated example is, as `read_examples` makes its requests, few-shot prefix off."""

from __future__ import annotations

import json

import pytest

from lightning_gen.evaluation.formats import read_examples
from lightning_gen.evaluation.specs import TaskSpec
from lightning_gen.text.task_records import example_header

ROWS = [{"query": f"Question {i}?", "choices": [f"yes {i}", f"no {i}"], "gold": i % 2} for i in range(6)]
ROWS[3]["query"] = "A question\n\nover two paragraphs?"  # the few-shot delimiter inside a question


@pytest.mark.parametrize("num_fewshot", [0, 1, 3])
def test_the_question_is_told_from_the_fewshot_examples(tmp_path, num_fewshot):
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    examples = read_examples(TaskSpec("mc", path, "multiple_choice", num_fewshot=num_fewshot))
    for example in examples:
        header = example_header(example.index, example.requests, task_type="multiple_choice", gold=example.gold,
                                fewshot=example.fewshot)
        assert header["choices"] == [f" yes {example.index}", f" no {example.index}"]
        assert header["gold"] == example.gold
        # the question as the file has it, the shots taken off: also where a shot or the question holds the
        # few-shot delimiter itself
        assert header["context"] == ROWS[example.index]["query"] and "fewshot_included" not in header
    if num_fewshot:
        assert 0 < sum(ROWS[3]["query"] in e.requests[0][0] for e in examples) < len(examples)  # both kinds seen

def test_a_context_without_its_fewshot_prefix_is_refused():
    with pytest.raises(ValueError, match="every context of example 0 must start with its `fewshot` prefix"):
        example_header(0, [("question", " x")], task_type="language_modeling", fewshot="shot\n\n")


def test_requests_of_another_shape_are_refused_naming_the_type():
    with pytest.raises(ValueError, match="`task_type` must be .* got 'multiple_choice' for 2 request"):
        example_header(0, [("a", " x"), ("b", " x")], task_type="multiple_choice")
    with pytest.raises(ValueError, match="got 'language_modeling' for 2 request"):
        example_header(0, [("a", " x"), ("a", " y")], task_type="language_modeling")
    with pytest.raises(ValueError, match="`requests` of example 4 must hold at least one request"):
        example_header(4, [], task_type="schema")
