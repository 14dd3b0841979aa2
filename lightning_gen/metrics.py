"""Sample-quality scalars: how long, how often finished, how varied, how repetitive, how likely.

Pure functions of `Sample`s (and, for log-probabilities, of a model callable); no Lightning. Charted over
pretraining they separate the phases one sees when reading samples: random tokens (distinct-n near 1, no EOS,
every completion as long as allowed), repetition loops (repeated n-gram rate up, distinct-n down), then fluent
text (both moderate, EOS appears, lengths settle). Compare values only between rounds with the same prompts and
generation settings: every one of them depends on ``max_new_tokens``, the tokenizer and the sampling filters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch

from lightning_gen.adapters import model_device, output_logits
from lightning_gen.rendering import Sample

__all__ = [
    "LastPositionOnlyError",
    "completion_length",
    "distinct_n",
    "eos_rate",
    "perplexity",
    "reference_loss",
    "repeated_ngram_rate",
    "sequence_logprobs",
    "summarize",
    "token_logprobs",
]

# seq-rep-4 (Welleck et al. 2019, "Neural Text Generation with Unlikelihood Training"): 4-grams are long enough
# that natural text rarely repeats one within a short continuation, and the published numbers are comparable.
DEFAULT_REPEAT_N = 4


def _ngrams(ids: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(ids[i: i + n]) for i in range(len(ids) - n + 1)]


def _check_n(n: Any) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"`n` must be a positive integer, got {n!r}")


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
    _check_n(n)
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
    _check_n(n)
    rates = []
    for s in samples:
        grams = _ngrams(s.completion_ids, n)
        if len(grams) > 1:
            rates.append(1 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else 0.0


# ----------------------------------------------------------------- log-probabilities under the model
class LastPositionOnlyError(ValueError):
    """The model returned logits for the last position only, so sequences cannot be scored."""


@torch.no_grad()
def token_logprobs(
    model_fn: Callable[[torch.Tensor], Any],
    prompt_ids: Sequence[int],
    target_ids: Sequence[int],
    *,
    context_length: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Teacher-forced log-probabilities `(N,)` (float32, on the CPU) of ``target_ids`` following ``prompt_ids``.

    One forward over ``prompt_ids + target_ids`` (without the last token, which predicts nothing we score);
    the logits at each position are turned into log-probabilities in float32 and the next token's is gathered.
    The model's train/eval mode is the caller's business; gradients are off.

    Args:
        model_fn: Maps a `(1, T)` LongTensor to logits `(1, T, V)` for *every* position (a tensor, a tuple whose
            first item they are, or an object or dict with ``logits``).
        prompt_ids: The conditioning tokens; at least one.
        target_ids: The tokens to score.
        context_length: Most tokens the model takes at once. A longer sequence is cropped from the left; target
            tokens with nothing left before them in the window are not scored, so ``N = min(len(target_ids),
            context_length)``: the *last* ``N`` targets.
        device: Where the ids go; None uses the device of the model's first parameter (CPU for a plain callable).

    Raises:
        ValueError: ``prompt_ids`` is empty, ``context_length`` is not a positive integer, the model returned the
            last position only, or logits of another shape, or a target id is outside the logits' vocabulary.

    Example::

        >>> uniform = lambda ids: torch.zeros(1, ids.shape[1], 4)   # (1, T, V): every token has p = 1/4
        >>> token_logprobs(uniform, [0], [1, 2])
        tensor([-1.3863, -1.3863])
    """
    prompt, target = list(prompt_ids), list(target_ids)
    if not prompt:
        raise ValueError("`prompt_ids` must hold at least one token: the first target needs something to follow")
    if context_length is not None and (
        not isinstance(context_length, int) or isinstance(context_length, bool) or context_length < 1
    ):
        raise ValueError(f"`context_length` must be a positive integer or None, got {context_length!r}")
    ids = prompt + target
    if context_length is not None:
        ids = ids[-(context_length + 1):]  # the last token is never fed, so the input is at most context_length
    scored = min(len(target), len(ids) - 1)
    if scored == 0:
        return torch.empty(0)
    device = torch.device(device) if device is not None else model_device(model_fn, torch.device("cpu"))
    inputs = torch.tensor([ids[:-1]], dtype=torch.long, device=device)  # (1, T)
    logits = output_logits(model_fn(inputs))
    length = inputs.shape[1]
    if logits.dim() != 3 or logits.shape[0] != 1 or logits.shape[1] != length:
        if length > 1 and (logits.dim() == 2 or (logits.dim() == 3 and logits.shape[1] == 1)):
            raise LastPositionOnlyError(
                f"scoring needs full-sequence logits (1, T, V) with T={length}, but the model returned only the last "
                f"position, shape {tuple(logits.shape)}; pass a callable that returns logits for every position"
            )
        raise ValueError(f"the model's logits must have shape (1, {length}, V), got {tuple(logits.shape)}")
    targets = torch.tensor(ids[-scored:], dtype=torch.long, device=logits.device)  # (N,)
    vocab = logits.shape[-1]
    if int(targets.max()) >= vocab or int(targets.min()) < 0:
        raise ValueError(f"token ids must be in [0, {vocab}) to be scored against logits of vocabulary {vocab}, "
                         f"got {sorted(set(t for t in ids[-scored:] if not 0 <= t < vocab))[:5]}")
    # Position t predicts token t + 1: the last `scored` positions predict the last `scored` tokens.
    logprobs = torch.log_softmax(logits[0, -scored:].float(), dim=-1)  # (N, V)
    return logprobs.gather(-1, targets[:, None]).squeeze(-1).cpu()  # (N,)


def sequence_logprobs(
    model_fn: Callable[[torch.Tensor], Any],
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    context_length: int | None = None,
    device: torch.device | str | None = None,
) -> list[float]:
    """Mean per-token log-probability of each completion under the model, teacher-forced on its prompt.

    One forward per completion (prompts differ in length and the model need not take a mask). A completion with
    no scored token (empty) gives NaN. ``perplexity(mean)`` is ``exp(-mean)``. On the model's own samples this is
    how sure it was of what it wrote: at temperature 1 it estimates the negative per-token entropy, near
    ``-log(vocab size)`` at initialisation and rising towards 0 as training sharpens the distribution. A value
    near 0 (perplexity near 1) with a high repeated n-gram rate means the model is confidently looping.

    Args:
        model_fn, context_length, device: As for `token_logprobs`.
        prompt_ids: One list of prompt tokens per completion.
        completion_ids: The completions' tokens.

    Raises:
        ValueError: The two lists differ in length, or as `token_logprobs`.

    Example::

        >>> uniform = lambda ids: torch.zeros(1, ids.shape[1], 4)
        >>> [round(x, 4) for x in sequence_logprobs(uniform, [[0], [1, 2]], [[1, 2], [3]])]
        [-1.3863, -1.3863]
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"`prompt_ids` and `completion_ids` must pair up, got {len(prompt_ids)} and {len(completion_ids)}")
    out = []
    for prompt, completion in zip(prompt_ids, completion_ids):
        scores = token_logprobs(model_fn, prompt, completion, context_length=context_length, device=device)
        out.append(float(scores.mean()) if scores.numel() else math.nan)
    return out


def reference_loss(
    model_fn: Callable[[torch.Tensor], Any],
    prompt_ids: Sequence[int],
    reference_ids: Sequence[int],
    *,
    context_length: int | None = None,
    device: torch.device | str | None = None,
) -> float:
    """Teacher-forced mean cross-entropy (nats per token) of a reference continuation given its prompt.

    The per-prompt counterpart of the validation loss, on text you chose: healthy is falling roughly like the
    training loss; a reference loss that rises while the training loss falls means the model is drifting away
    from that kind of text.

    Raises:
        ValueError: ``reference_ids`` is empty, or as `token_logprobs`.

    Example::

        >>> uniform = lambda ids: torch.zeros(1, ids.shape[1], 4)
        >>> round(reference_loss(uniform, [0], [1, 2, 3]), 4)   # log 4
        1.3863
    """
    if not list(reference_ids):
        raise ValueError("`reference_ids` must hold at least one token to score")
    scores = token_logprobs(model_fn, prompt_ids, reference_ids, context_length=context_length, device=device)
    return -float(scores.mean())


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
