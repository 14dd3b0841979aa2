"""The task headers: what each evaluated example is, as `read_examples` makes its requests, few-shot prefix off."""

from __future__ import annotations

import json

import pytest

from lightning_gen.evaluation.formats import read_examples
from lightning_gen.evaluation.specs import TaskSpec
from lightning_gen.text.task_records import example_header, fewshot_split

ROWS = [{"query": f"Question {i}?", "choices": [f"yes {i}", f"no {i}"], "gold": i % 2} for i in range(6)]
ROWS[3]["query"] = "A question\n\nover two paragraphs?"  # the few-shot delimiter inside a question


@pytest.mark.parametrize("num_fewshot", [0, 1, 3])
def test_the_question_is_told_from_the_fewshot_examples_where_it_can_be(tmp_path, num_fewshot):
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    examples = read_examples(TaskSpec("mc", path, "multiple_choice", num_fewshot=num_fewshot))
    for example in examples:
        header = example_header(example.index, example.requests, task_type="multiple_choice", gold=example.gold,
                                num_fewshot=num_fewshot)
        assert header["choices"] == [f" yes {example.index}", f" no {example.index}"]
        assert header["gold"] == example.gold
        context = example.requests[0][0]
        if num_fewshot and ROWS[3]["query"] in context:  # a shot or the question holds the delimiter: no guess
            assert header["context"] == context and header["fewshot_included"] is True
        else:  # the question as the file has it, the shots taken off
            assert header["context"] == ROWS[example.index]["query"] and "fewshot_included" not in header
    if num_fewshot:
        assert sum(ROWS[3]["query"] in e.requests[0][0] for e in examples) < len(examples)  # both cases seen

def test_a_split_is_never_a_guess():
    assert fewshot_split("shot\n\nquestion", 1, "\n\n") == ("shot\n\n", "question")
    assert fewshot_split("shot\n\npart\n\nquestion", 1, "\n\n") is None  # which "\n\n" ends the shot?
    assert fewshot_split("no delimiter", 1, "\n\n") is None
    assert fewshot_split("x", 1, "") is None


def test_requests_of_another_shape_are_refused_naming_the_type():
    with pytest.raises(ValueError, match="`task_type` must be .* got 'multiple_choice' for 2 request"):
        example_header(0, [("a", " x"), ("b", " x")], task_type="multiple_choice")
    with pytest.raises(ValueError, match="got 'language_modeling' for 2 request"):
        example_header(0, [("a", " x"), ("a", " y")], task_type="language_modeling")
    with pytest.raises(ValueError, match="`requests` of example 4 must hold at least one request"):
        example_header(4, [], task_type="schema")
