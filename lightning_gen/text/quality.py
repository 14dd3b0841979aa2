"""Sample-quality scalars: how long, how often finished, how varied, how repetitive, how likely.

Pure functions of `Sample`s: no torch, no Lightning (the log-probabilities behind ``mean_logprob`` and
``reference_loss`` are measured by `lightning_gen.decoding.scoring`). Charted over
pretraining they separate the phases one sees when reading samples: random tokens (distinct-n near 1, no EOS,
every completion as long as allowed), repetition loops (repeated n-gram rate up, distinct-n down), then fluent
text (both moderate, EOS appears, lengths settle). Compare values only between rounds with the same prompts and
generation settings: every one of them depends on ``max_new_tokens``, the tokenizer and the sampling filters.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

from lightning_gen._checks import check_int
from lightning_gen.text.samples import Sample

__all__ = [
    "completion_length",
    "distinct_n",
    "eos_rate",
    "perplexity",
    "repeated_ngram_rate",
    "summarize",
]

# seq-rep-4 (Welleck et al. 2019, "Neural Text Generation with Unlikelihood Training"): 4-grams are long enough
# that natural text rarely repeats one within a short continuation, and the published numbers are comparable.
DEFAULT_REPEAT_N = 4


def _ngrams(ids: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(ids[i: i + n]) for i in range(len(ids) - n + 1)]


def completion_length(samples: Sequence[Sample]) -> float:
    """Mean completion length in tokens (an EOS that ended a completion counts); 0.0 for no samples.

    Healthy: at initialisation every completion runs to ``max_new_tokens``, since EOS is as unlikely as any
    token. Once the model learns where documents end the mean falls below the cap and settles near the data's
    typical length. Pinned at the cap late in training: EOS never learned (or the wrong EOS id); collapsing
    towards 1: the model ends everything at once.

    Example::

        >>> completion_length([Sample("a", "bc", [0], [1, 2]), Sample("a", "b", [0], [1])])
        1.5
    """
    if not samples:
        return 0.0
    return sum(len(s.completion_ids) for s in samples) / len(samples)


def eos_rate(samples: Sequence[Sample], eos_ids: Collection[int]) -> float:
    """Fraction of completions whose last token is an EOS id (they finished before ``max_new_tokens``).

    0.0 for no samples, and always 0.0 when ``eos_ids`` is empty (nothing can finish). Healthy: 0 at
    initialisation, rising as the model learns document boundaries, to about the share of documents in the data
    shorter than ``max_new_tokens``. Still 0 after many steps: check that the tokenizer's EOS is the id the data
    ends documents with.

    Example::

        >>> eos_rate([Sample("a", "b.", [0], [1, 9]), Sample("a", "bc", [0], [1, 2])], eos_ids={9})
        0.5
    """
    if not samples:
        return 0.0
    eos = set(eos_ids)
    return sum(1 for s in samples if s.completion_ids and s.completion_ids[-1] in eos) / len(samples)


def distinct_n(samples: Sequence[Sample], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams, pooled over every completion's token ids.

    N-grams never span two completions, but uniqueness is counted across them, so the same text for every prompt
    lowers it too. 0.0 when no completion has ``n`` tokens. Healthy: near 1 for the random tokens of an untrained
    model, a dip during the repetition phase early in training, then a plateau well above that dip (for
    distinct-2 on subword tokens, typically 0.6-0.9 with a few hundred tokens pooled). A fall late in training
    means mode collapse. It shrinks as more tokens are pooled, so compare only rounds of the same size.

    Raises:
        ValueError: ``n`` is not a positive integer.

    Example::

        >>> distinct_n([Sample("a", "", [0], [1, 2, 1, 2])], 2)  # (1,2) (2,1) (1,2): 2 unique of 3
        0.6666666666666666
    """
    check_int("n", n, low=1)
    grams = [g for s in samples for g in _ngrams(s.completion_ids, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(samples: Sequence[Sample], n: int = DEFAULT_REPEAT_N) -> float:
    """Degeneration: per completion, the fraction of its n-grams already seen earlier in it; averaged.

    This is seq-rep-n, ``1 - unique n-grams / n-grams`` of each completion. Completions shorter than ``n + 1``
    tokens cannot repeat and are left out; 0.0 when none is long enough. The default ``n=4`` follows seq-rep-4
    (Welleck et al. 2019), which reports about 0.006 for human text and 0.44 for greedy decoding from a
    likelihood-trained model on WikiText-103; shorter n-grams repeat in healthy text too (function words,
    spaces, and for a character-level tokenizer, common syllables). Healthy: near 0 at initialisation, a bump
    during the repetition phase, then low (under about 0.05 for sampled text, higher for greedy). Climbing late
    in training: the model is falling into loops.

    Raises:
        ValueError: ``n`` is not a positive integer.

    Example::

        >>> repeated_ngram_rate([Sample("a", "", [0], [1, 2, 1, 2, 1])], n=2)  # (1,2)(2,1) new, (1,2)(2,1) seen
        0.5
    """
    check_int("n", n, low=1)
    rates = []
    for s in samples:
        grams = _ngrams(s.completion_ids, n)
        if len(grams) > 1:
            rates.append(1 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else 0.0


def perplexity(mean_logprob: float) -> float:
    """``exp(-mean_logprob)``: the number of equally likely tokens the model was choosing among; inf on overflow.

    Example::

        >>> perplexity(-math.log(4))
        4.0
    """
    try:
        return math.exp(-mean_logprob)
    except OverflowError:
        return math.inf


# ----------------------------------------------------------------- one round's scalars
def _mean_finite(values: Sequence[Any]) -> float | None:
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def summarize(
    samples: Sequence[Sample], *, eos_ids: Collection[int], seconds: float | None = None
) -> dict[str, float]:
    """The scalars of one sampling round, under stable keys.

    Always: ``length`` (`completion_length`), ``eos_rate``, ``distinct_1``, ``distinct_2``, ``repeated_ngram_rate``
    (`repeated_ngram_rate` with n=4). With ``seconds`` (the round's wall time): ``tokens_per_second``, the sampled
    completion tokens over it. When samples carry ``metrics["mean_logprob"]``: ``mean_logprob``, its average over
    those samples (each completion weighs the same), and ``perplexity = exp(-mean_logprob)``. When they carry
    ``metrics["reference_loss"]``: ``reference_loss``, its average. NaN and missing values are left out.

    Raises:
        ValueError: ``seconds`` is not positive.

    Example::

        >>> scalars = summarize([Sample("a", "", [0], [5, 6, 7, 9], metrics={"mean_logprob": -1.0})],
        ...                     eos_ids={9}, seconds=2.0)
        >>> list(scalars)  # doctest: +NORMALIZE_WHITESPACE
        ['length', 'eos_rate', 'distinct_1', 'distinct_2', 'repeated_ngram_rate', 'tokens_per_second',
         'mean_logprob', 'perplexity']
        >>> scalars["length"], scalars["eos_rate"], scalars["tokens_per_second"], round(scalars["perplexity"], 4)
        (4.0, 1.0, 2.0, 2.7183)
    """
    out = {
        "length": completion_length(samples),
        "eos_rate": eos_rate(samples, eos_ids),
        "distinct_1": distinct_n(samples, 1),
        "distinct_2": distinct_n(samples, 2),
        "repeated_ngram_rate": repeated_ngram_rate(samples),
    }
    if seconds is not None:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not seconds > 0:
            raise ValueError(f"`seconds` must be a positive number or None, got {seconds!r}")
        out["tokens_per_second"] = sum(len(s.completion_ids) for s in samples) / seconds
    mean_logprob = _mean_finite([s.metrics["mean_logprob"] for s in samples if "mean_logprob" in s.metrics])
    if mean_logprob is not None:
        out["mean_logprob"] = mean_logprob
        out["perplexity"] = perplexity(mean_logprob)
    loss = _mean_finite([s.metrics["reference_loss"] for s in samples if "reference_loss" in s.metrics])
    if loss is not None:
        out["reference_loss"] = loss
    return out
