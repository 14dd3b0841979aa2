"""Sample-quality scalars, each checked against values worked out by hand on tiny token lists."""

from __future__ import annotations

import math

import pytest

from lightning_gen.text.quality import (
    completion_length,
    distinct_n,
    eos_rate,
    perplexity,
    repeated_ngram_rate,
    summarize,
)
from lightning_gen.text.samples import Sample


def samples(*completions: list[int], **metrics: list[float]) -> list[Sample]:
    """Samples with the given completion ids (prompt [0]); ``metrics`` gives per-sample values by name."""
    return [
        Sample("p", "c", [0], list(ids), metrics={k: v[i] for k, v in metrics.items()})
        for i, ids in enumerate(completions)
    ]


# ----------------------------------------------------------------- length, EOS
def test_completion_length_is_the_mean_token_count():
    # (3 + 1 + 5) / 3 = 3
    assert completion_length(samples([1, 2, 3], [9], [1, 1, 1, 1, 1])) == 3.0
    assert completion_length([]) == 0.0


def test_eos_rate_counts_completions_ending_in_any_eos_id():
    # ends in 9 (eos), ends in 8 (eos), 9 in the middle only (not finished), empty (not finished): 2 / 4
    batch = samples([1, 9], [8], [9, 1], [])
    assert eos_rate(batch, {8, 9}) == 0.5
    assert eos_rate(batch, set()) == 0.0
    assert eos_rate([], {9}) == 0.0


# ----------------------------------------------------------------- diversity
def test_distinct_1_and_2_pool_ngrams_over_completions_without_crossing_them():
    batch = samples([1, 2, 1], [2, 3])
    # unigrams: 1 2 1 2 3 -> unique {1, 2, 3}: 3 / 5
    assert distinct_n(batch, 1) == pytest.approx(3 / 5)
    # bigrams: (1,2) (2,1) | (2,3) -> all unique: 3 / 3; (1,2) is not joined to (2,3) across the boundary
    assert distinct_n(batch, 2) == 1.0
    # the same completion for every prompt counts as repetition: (1,2) twice -> 1 / 2
    assert distinct_n(samples([1, 2], [1, 2]), 2) == 0.5


def test_distinct_n_without_ngrams_is_zero_and_n_is_checked():
    assert distinct_n(samples([1], []), 2) == 0.0
    assert distinct_n([], 1) == 0.0
    with pytest.raises(ValueError, match=r"`n` must be a positive integer, got 0"):
        distinct_n(samples([1]), 0)


def test_repeated_ngram_rate_averages_within_completion_repeats():
    batch = samples(
        [1, 2, 3, 1, 2, 3],  # 4-grams: 1231 2312 3123 -> no repeat: 0
        [5, 5, 5, 5, 5, 5],  # 4-grams: 5555 x3 -> 2 of 3 seen before: 2/3
        [7, 7, 7],  # shorter than 4 + 1: cannot repeat, left out
    )
    assert repeated_ngram_rate(batch) == pytest.approx((0 + 2 / 3) / 2)
    # n=3 on the first: 123 231 312 123 -> one repeat of 4: 1/4; second: 555 x4 -> 3/4; third: one 3-gram, left out
    assert repeated_ngram_rate(batch, n=3) == pytest.approx((1 / 4 + 3 / 4) / 2)


def test_repeated_ngram_rate_is_per_completion_not_across():
    # each completion alone is repeat-free, though they share every bigram
    assert repeated_ngram_rate(samples([1, 2, 3], [1, 2, 3]), n=2) == 0.0
    assert repeated_ngram_rate(samples([1], [2, 2]), n=2) == 0.0
    with pytest.raises(ValueError, match="`n`"):
        repeated_ngram_rate(samples([1]), n=-1)


def test_perplexity_overflow_is_inf():
    assert perplexity(-math.log(10)) == pytest.approx(10)
    assert perplexity(-1e6) == math.inf


# ----------------------------------------------------------------- one round
def test_summarize_keys_and_values():
    batch = samples([1, 2, 9], [3, 3, 3, 3, 3], mean_logprob=[-1.0, -3.0])
    out = summarize(batch, eos_ids={9}, seconds=4.0)
    assert list(out) == ["length", "eos_rate", "distinct_1", "distinct_2", "repeated_ngram_rate",
                         "tokens_per_second", "mean_logprob", "perplexity"]
    assert out["length"] == 4.0  # (3 + 5) / 2
    assert out["eos_rate"] == 0.5
    assert out["distinct_1"] == pytest.approx(4 / 8)  # 1 2 9 3 3 3 3 3 -> {1, 2, 9, 3}
    assert out["distinct_2"] == pytest.approx(3 / 6)  # (1,2) (2,9) | (3,3) x4 -> 3 unique of 6
    assert out["repeated_ngram_rate"] == pytest.approx(1 / 2)  # first too short; 3333 x2 -> 1/2
    assert out["tokens_per_second"] == 2.0  # 8 tokens / 4 s
    assert out["mean_logprob"] == -2.0  # (-1 - 3) / 2
    assert out["perplexity"] == pytest.approx(math.exp(2))


def test_summarize_optional_keys():
    assert list(summarize(samples([1, 2]), eos_ids=set())) == [
        "length", "eos_rate", "distinct_1", "distinct_2", "repeated_ngram_rate"]
    # NaN log-probs (empty completions) and missing ones are left out of the mean; reference loss is averaged
    batch = samples([1], [2], [3], mean_logprob=[-2.0, math.nan, -4.0], reference_loss=[1.0, 2.0, 6.0])
    out = summarize(batch, eos_ids=set())
    assert out["mean_logprob"] == -3.0
    assert out["reference_loss"] == 3.0
    with pytest.raises(ValueError, match=r"`seconds` must be a positive number or None, got 0"):
        summarize(batch, eos_ids=set(), seconds=0)
