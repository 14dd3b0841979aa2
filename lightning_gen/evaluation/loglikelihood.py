"""`loglikelihood` and `loglikelihood_rolling`: lm-evaluation-harness's two scoring requests, for any torch model.

Same numbers as lm-eval's ``HFLM(..., logits_cache=False)`` on a transformers model with the same tokenizer (within
float rounding; the log-softmax runs in float32 whatever the model's dtype): tokenisation as ``HFLM._encode_pair``
(`~lightning_gen.evaluation.encoding.RequestEncoder`), scoring as ``_loglikelihood_tokens``
(`~lightning_gen.decoding.likelihood.loglikelihood_tokens`). Where lm-eval's default ``logits_cache=True`` reads
some requests from another request's positions (requests sharing ``context + continuation[:-1]`` whose
continuations differ in length), these numbers stay exact. Unlike ``HFLM``, the model's modes and state and the
tokenizer (its pad token, its padding side) are left as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from lightning_gen.decoding.adapters import AdapterName, ModelAdapter
from lightning_gen.decoding.likelihood import loglikelihood_tokens, scoring_adapter
from lightning_gen.evaluation.encoding import RequestEncoder

__all__ = ["loglikelihood", "loglikelihood_rolling"]


def loglikelihood(
    model: nn.Module,
    requests: Sequence[tuple[str, str]],
    *,
    tokenizer: Any,
    batch_size: int | None = None,
    adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
    context_length: int | None = None,
) -> list[tuple[float, bool]]:
    """``(log-likelihood, is_greedy)`` of each ``(context, continuation)``: lm-eval's ``LM.loglikelihood``.

    The summed log-probability (nats) of the continuation's tokens given the context, and whether greedy decoding
    from the context would produce exactly those tokens. Many requests share each forward (see
    `~lightning_gen.decoding.likelihood.loglikelihood_tokens`); the model runs in eval mode under `torch.no_grad`
    and is left with its modes and state as before.

    Args:
        model: Any torch module returning logits (a transformers model, nanoGPT, litgpt, gpt-fast ...).
        requests: ``(context, continuation)`` strings; a multiple-choice question is one request per choice, the
            choice usually starting with a space (``("Paris is the capital of", " France")``).
        tokenizer: Anything `~lightning_gen.load_tokenizer` takes (encoded as lm-eval's ``HFLM`` encodes).
        batch_size: Most rows per forward; None fits as many as
            `~lightning_gen.decoding.likelihood.BATCH_TOKENS` padded tokens allow.
        adapter: How to call the model (see `~lightning_gen.generate`); detected by default.
        context_length: Most tokens the model takes; by default the adapter's or what the model advertises.
            Longer requests lose tokens from the left, as in lm-eval.

    Returns:
        One ``(float, bool)`` per request, in order.

    Raises:
        ValueError: A request with no continuation tokens, or one longer than the context, or as
            `~lightning_gen.decoding.likelihood.loglikelihood_tokens`.

    Example::

        >>> import torch
        >>> class Chars:
        ...     eos_token_id = 0
        ...     def encode(self, text): return [ord(c) % 64 for c in text]
        ...     def decode(self, ids): return "".join(chr(i + 32) for i in ids)
        >>> model = nn.Embedding(64, 64)                 # a bigram model: (B, T) -> (B, T, V)
        >>> scores = loglikelihood(model, [("The cat", " sat"), ("The cat", " sit")], tokenizer=Chars())
        >>> [type(value).__name__ for value in scores[0]]
        ['float', 'bool']
    """
    encoder = RequestEncoder(tokenizer)
    encoded = [encoder.pair(context, continuation) for context, continuation in _pairs(requests)]
    return loglikelihood_tokens(model, encoded, batch_size=batch_size, adapter=adapter, context_length=context_length)


def loglikelihood_rolling(
    model: nn.Module,
    texts: Sequence[str],
    *,
    tokenizer: Any,
    batch_size: int | None = None,
    adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
    context_length: int | None = None,
) -> list[float]:
    """The log-likelihood of each whole text: lm-eval's ``loglikelihood_rolling`` (perplexity, bits per byte).

    Each text is encoded with the tokenizer's default special tokens and cut into windows of the context length
    (`~lightning_gen.evaluation.encoding.rolling_windows`): the first predicts the first tokens after the prefix
    token (BOS, else EOS), each later one the next tokens, so every token is predicted once. Arguments as
    `loglikelihood`.

    Example::

        >>> class Chars:
        ...     eos_token_id = 0
        ...     def encode(self, text): return [ord(c) % 64 for c in text]
        ...     def decode(self, ids): return "".join(chr(i + 32) for i in ids)
        >>> [total] = loglikelihood_rolling(nn.Embedding(64, 64), ["Hello world"], tokenizer=Chars(), context_length=4)
        >>> total < 0
        True
    """
    if isinstance(texts, str):
        raise TypeError("`texts` must be a sequence of strings, got one string")
    runner, limit = scoring_adapter(model, adapter, context_length=context_length)
    return rolling_totals(RequestEncoder(tokenizer), texts, limit, lambda pairs: loglikelihood_tokens(
        model, pairs, batch_size=batch_size, adapter=runner, context_length=limit))


def rolling_totals(encoder: RequestEncoder, texts: Sequence[str], limit: int | None,
                   score: Callable[[list[tuple[list[int], list[int]]]], list[tuple[float, bool]]]) -> list[float]:
    """Each text's summed log-likelihood over its rolling windows of ``limit`` tokens, every window of every text
    scored in one call of ``score`` (`loglikelihood_tokens`, bound to a model)."""
    windows = [encoder.rolling(text, limit) for text in texts]
    scores = score([window for text_windows in windows for window in text_windows])
    totals, start = [], 0
    for text_windows in windows:
        totals.append(float(sum(ll for ll, _ in scores[start:start + len(text_windows)])))
        start += len(text_windows)
    return totals


def _pairs(requests: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = []
    for i, request in enumerate(requests):
        if not (isinstance(request, (tuple, list)) and len(request) == 2 and all(isinstance(s, str) for s in request)):
            raise TypeError(f"`requests[{i}]` must be a pair of strings (context, continuation), got {request!r}")
        pairs.append((request[0], request[1]))
    return pairs
