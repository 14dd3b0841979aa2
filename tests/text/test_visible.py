"""The visible-text rule: every character a model can write is either itself or a mark that says what it is."""

from __future__ import annotations

import pytest

from lightning_gen.text.visible import Piece, one_line, plain, shown_completion, split_eos, visible


def shown(text: str) -> str:
    return "".join(p.text for p in visible(text))


@pytest.mark.parametrize(("text", "expected"), [
    ("plain words", "plain words"),
    ("a\nb", "a⏎b"),
    ("a\tb", "a⇥b"),
    ("end  ", "end··"),
    ("two  \n  lines  ", "two··⏎  lines··"),  # spaces leading a line are visible as they are
    ("   ", "···"),
    ("", "∅"),
    ("\x1b[31m", "␛[31m"),
    ("\x00\x07\x7f", "␀␇␡"),
    ("\x85", "\\x85"),
    ("no\u00a0break", "no⍽break"),
    ("emoji 😀, CJK 漢字, é", "emoji 😀, CJK 漢字, é"),
    ("<eos></s>", "<eos></s>"),
])
def test_each_character_shows_as_itself_or_as_its_mark(text, expected):
    assert shown(text) == expected


def test_marks_say_what_they_stand_for_and_the_text_runs_are_whole():
    assert visible("ab\x1bc ") == [
        Piece("ab"), Piece("␛", "control", "control character U+001B"), Piece("c"),
        Piece("·", "space", "trailing space")]


def test_no_character_is_lost_or_left_acting():
    text = "".join(chr(c) for c in range(0, 0xA0)) + " x "
    pieces = visible(text)
    assert all(p.mark is None or len(p.text) <= 4 for p in pieces)
    ordinary = "".join(p.text for p in pieces if p.mark is None)
    assert all(c.isprintable() for c in ordinary)
    assert len([p for p in pieces if p.mark]) + len(ordinary) == len(text)


def test_the_eos_token_is_split_off_and_shown_as_a_mark():
    assert split_eos("ok</s>", eos=True, tokens=["ok", "</s>"]) == ("ok", "</s>")
    assert split_eos("ok</s>", eos=True, tokens=["o", "k"]) == ("ok</s>", "")  # tokens do not add up: text unknown
    assert split_eos("ok</s>", eos=True, tokens=["o", "k"], eos_text="</s>") == ("ok", "</s>")
    assert split_eos("ok</s>", eos=False, eos_text="</s>") == ("ok</s>", None)  # said not to have ended
    assert [tuple(p)[:2] for p in shown_completion("", "</s>")] == [("EOS", "eos")]  # not ∅ then
    assert plain(shown_completion("a ", "</s>")) == "a·⟨EOS⟩"


def test_one_line_is_cut_with_an_ellipsis():
    assert one_line("x\n" * 10, 7) == "x⏎x⏎x⏎…"
    assert one_line("short", 7) == "short"


def test_the_rule_and_the_diff_are_pure_python():
    """The console, the terminal viewer and TensorBoard's plugin all import them: never torch or Lightning."""
    import json
    import subprocess
    import sys

    code = ("import sys, json, lightning_gen.text.visible, lightning_gen.text.diff\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert not set(json.loads(out.stdout)) & {"torch", "transformers", "lightning", "rich", "tensorboard"}
