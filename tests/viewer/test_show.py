"""`lightning-gen show` on rich: tables that use the width, greedy under the sampled text when both do not fit,
a coloured inline word diff of the greedy completions, EOS as a badge, and the visible-text rule."""

from __future__ import annotations

import json
import re

import pytest

from lightning_gen.viewer.cli import main

SGR = re.compile(r"\x1b\[([0-9;]*)m")


def record(step, index, prompt, completion, **extra):
    return {"step": step, "tag": "samples", "index": index, "prompt": prompt, "completion": completion,
            "greedy": None, "reference": None, "prompt_ids": [1], "completion_ids": [2, 3],
            "metrics": {"length": 2.0}, **extra}


def write(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def show(capsys, *args, width=60):
    assert main(["show", *map(str, args), "--width", str(width)]) == 0
    return capsys.readouterr().out


def rows_of(out):
    """The table rows (key │ ...) without the header."""
    return [line for line in out.splitlines() if "│" in line and "completion" not in line]


def styles_of(out, text):
    """The SGR parameters in force where ``text`` starts in ``out`` (rich writes one sequence per styled run)."""
    at = out.index(text)
    codes = SGR.findall(out[:at])
    return codes[-1] if codes else ""


def test_diff_marks_the_words_that_changed_and_how_many_stayed(tmp_path, capsys):
    """Without greedy completions, the sampled ones are diffed; git's word-diff marks without colour."""
    write(tmp_path, [record(0, 0, "Once", " upon zq"), record(100, 0, "Once", " upon a time"),
                     record(200, 0, "Once", " upon a time there")])
    out = show(capsys, tmp_path, "--diff", "--color", "never")
    assert rows_of(out) == [
        "   0 │      │  upon zq",
        " 100 │  40% │  upon [-zq-]{+a time+}",  # upon kept: 2 × 1 word / (2 + 3 words)
        " 200 │  86% │  upon a time{+ there+}",
    ]
    out = show(capsys, tmp_path, "--diff", "--color", "always")
    assert set(styles_of(out, "zq\x1b").split(";")) == {"9", "31"}  # struck through, red
    assert set(styles_of(out, "a time\x1b").split(";")) == {"1", "32"}  # bold green
    assert "[-" not in out and "{+" not in out


def test_diff_compares_the_greedy_completions_and_leaves_the_sampled_ones_alone(tmp_path, capsys):
    write(tmp_path, [record(0, 0, "p", "x q z " * 10, greedy="the cat sat"),
                     record(50, 0, "p", "y w v " * 10, greedy="the dog sat")])
    out = show(capsys, tmp_path, "--diff", "--color", "never")
    assert rows_of(out) == [
        "     0 │      │ " + ("x q z " * 10)[:43] + "…",
        "greedy │      │ the cat sat",
        "    50 │      │ " + ("y w v " * 10)[:43] + "…",
        "greedy │  67% │ the [-cat-]{+dog+} sat",
    ]


def test_diff_is_readable_without_wrap_every_change_shown(tmp_path, capsys):
    """A diff cut to one line would hide the changes at its end: the diffed text wraps, the sampled one does not."""
    old, new = " ".join(f"w{i}" for i in range(30)), " ".join(f"w{i}" for i in range(29)) + " END"
    write(tmp_path, [record(0, 0, "p", "s" * 200, greedy=old), record(1, 0, "p", "t" * 200, greedy=new)])
    out = show(capsys, tmp_path, "--diff", "--color", "never")
    assert all(len(line) <= 60 for line in out.splitlines())
    assert "[-w29-]{+END+}" in out  # the last word's change, past the first line
    [sampled] = [line for line in rows_of(out) if line.lstrip().startswith("1 │")]
    assert sampled.endswith("…")  # the sampled text stays one line


def test_a_long_completion_is_cut_to_one_line_with_an_ellipsis(tmp_path, capsys):
    write(tmp_path, [record(7, 0, "p", " ".join(["word"] * 30))])
    [row] = rows_of(show(capsys, tmp_path))
    assert row.startswith("   7 │ word word") and row.endswith("…") and len(row) == 60


def test_wrap_shows_every_character_and_control_characters_as_pictures(tmp_path, capsys):
    long = " ".join(["word"] * 30) + "\x1b[31m\ttab " + "x" * 70
    write(tmp_path, [record(7, 0, "p", long)])
    out = show(capsys, tmp_path, "--wrap")
    rows = rows_of(out)
    assert rows[0].startswith("   7 │ word word")
    assert all(row.startswith("     │ ") for row in rows[1:]) and len(rows) >= 4
    assert all(len(row) <= 60 for row in rows)
    # every character is there, in order; the escape sequence is shown, not obeyed; a long word is split
    assert "".join(row[7:] for row in rows).replace(" ", "") == ("word" * 30) + "␛[31m⇥tab" + "x" * 70
    assert "\x1b" not in out


def test_greedy_goes_under_the_sampled_text_unless_both_get_a_line(tmp_path, capsys):
    rows = [record(s, 0, "p", c, greedy=g, reference="the ref") for s, c, g in ((0, "a", "b"), (5, "c" * 90, "b"))]
    write(tmp_path, rows)
    out = show(capsys, tmp_path)
    assert "reference: the ref" in out
    assert out.split("reference: the ref\n")[1].splitlines()[:6] == [
        "  step │ completion",
        "───────┼" + "─" * 52,
        "     0 │ a",
        "greedy │ b",
        "     5 │ " + "c" * 50 + "…",
        "greedy │ b",
    ]
    out = show(capsys, tmp_path, width=200)  # room for 90 characters each: side by side
    assert out.split("reference: the ref\n")[1].splitlines()[3] == "     5 │ " + "c" * 90 + " " * 5 + "│ b"


def test_at_100_columns_each_sampled_completion_shows_80_characters_or_more(tmp_path, capsys):
    """The example's shape: 96-character completions full of newlines, a greedy one beside each, some ended."""
    words = 'the statement "x" is\n    a __del__() and the class  are\tordined\n'
    rows = [record(s, i, f"prompt {i}", (words * 3)[s % 11:][:96], greedy=(words * 3)[i:][:96])
            for s in range(0, 650, 50) for i in range(6)]
    rows[7].update(completion="short.</s>", eos=True, tokens=list("short.") + ["</s>"])
    write(tmp_path, rows)
    out = show(capsys, tmp_path, width=100)
    assert all(len(line) <= 100 for line in out.splitlines())
    sampled = [line for line in out.splitlines() if line[:6].strip().isdigit()]
    assert len(sampled) == 6 * 13
    for line in sampled:
        text = line.split(" │ ", 1)[1]
        assert len(text.rstrip("…")) >= 80 or text.endswith("⟨EOS⟩"), line
    assert sum(line.startswith("greedy │ ") for line in out.splitlines()) == 6 * 13
    assert " 50 │ short.⟨EOS⟩" in out


def test_eos_is_a_badge_not_the_tokens_text(tmp_path, capsys):
    write(tmp_path, [record(0, 0, "p", "ok.<|endoftext|>", eos=True, tokens=["ok", ".", "<|endoftext|>"],
                            greedy="fine<|endoftext|>")])
    out = show(capsys, tmp_path)
    assert "<|endoftext|>" not in out
    assert rows_of(out) == ["     0 │ ok.⟨EOS⟩" + " " * 17 + "│ fine⟨EOS⟩"]  # the greedy one: by the run's EOS
    out = show(capsys, tmp_path, "--color", "always")
    assert styles_of(out, "EOS\x1b") == "7"  # reverse video, like the dashboard's badge
    assert "⟨EOS⟩" not in out


def test_whitespace_only_and_empty_completions_are_visible(tmp_path, capsys):
    write(tmp_path, [record(0, 0, "p", "   "), record(5, 0, "p", " a  "), record(9, 0, "p", ""),
                     record(12, 0, "p", "\n  ")])
    assert rows_of(show(capsys, tmp_path)) == ["   0 │ ···", "   5 │  a··", "   9 │ ∅", "  12 │ ⏎··"]


def test_marks_are_dim_with_colour(tmp_path, capsys):
    write(tmp_path, [record(0, 0, "p", "a\nb")])
    out = show(capsys, tmp_path, "--color", "always")
    assert styles_of(out, "⏎") == "2"
    assert SGR.sub("", out).count("a⏎b") == 1


@pytest.mark.parametrize("width", [40, 100, 160])
def test_nothing_is_wider_than_the_width(tmp_path, capsys, width):
    write(tmp_path, [record(s, 0, "a prompt " * 9, "漢字 and é " * 20, greedy="x " * 70, reference="r " * 60)
                     for s in (0, 1)])
    out = show(capsys, tmp_path, "--diff", "--color", "never", width=width)
    from rich.cells import cell_len

    assert max(cell_len(line) for line in out.splitlines()) <= width
