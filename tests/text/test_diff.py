"""The word diff and the similarity figure: what changed between two completions, made visible."""

from __future__ import annotations

from lightning_gen.text.diff import diff_sides, inline_diff, similarity, word_diff


def texts(pieces):
    return [(p.text, op) for p, op in pieces]


def test_word_diff_rebuilds_both_texts():
    old, new = "the cat sat on the mat.", "a cat sat, then the hat."
    runs = word_diff(old, new)
    assert "".join(t for t, op in runs if op != "add") == old
    assert "".join(t for t, op in runs if op != "del") == new


def test_similarity_counts_words_not_whitespace():
    assert similarity("the cat", "the   cat\n") == 1.0
    assert similarity("a b c d", "a b x y") == 0.5
    assert similarity("", "x") == 0.0 and similarity("", "") == 1.0


def test_diffed_text_follows_the_visible_rule_on_each_side():
    old, new = diff_sides("say hi\n", "say hi  there")
    assert texts(old) == [("say hi", ""), ("⏎", "del")]
    # The two spaces are not trailing in the new text: they show as spaces.
    assert texts(new) == [("say hi", ""), ("  there", "add")]


def test_inline_diff_keeps_the_order_of_changes_around_an_unchanged_stretch():
    assert texts(inline_diff("a x b c y d", "a b c d")) == [
        ("a", ""), (" x", "del"), (" b c ", ""), ("y ", "del"), ("d", "")]


def test_the_eos_mark_is_diffed_too():
    assert texts(inline_diff("ok", "ok", old_eos="</s>", new_eos=None)) == [("ok", ""), ("EOS", "del")]
    assert texts(inline_diff("", "", old_eos=None, new_eos="")) == [("EOS", "add")]
    old, new = diff_sides("a", "a", old_eos="</s>", new_eos="</s>")
    assert texts(old) == texts(new) == [("a", ""), ("EOS", "")]
