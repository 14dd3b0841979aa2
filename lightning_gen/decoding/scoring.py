"""Teacher-forced log-probabilities of token sequences under a model: how sure it is of a text."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from lightning_gen._checks import check_int
from lightning_gen.decoding.adapters import (
    ModelAdapter,
    model_device,
    output_logits,
    resolve_adapter,
)

__all__ = ["LastPositionOnlyError", "check_scorable", "token_logprobs"]


class LastPositionOnlyError(ValueError):
    """The model returned logits for the last position only, so sequences cannot be scored."""


def _forward_of(model_fn: Callable[[torch.Tensor], Any] | ModelAdapter) -> tuple[Callable[[torch.Tensor], Any], Any]:
    """The callable that gives every position's logits, and what holds the weights (for the device)."""
    if isinstance(model_fn, nn.Module):
        with warnings.catch_warnings():  # an unknown cache protocol was reported when sampling chose the adapter
            warnings.simplefilter("ignore")
            model_fn = resolve_adapter(model_fn)
    if isinstance(model_fn, ModelAdapter):
        return model_fn.sequence_logits, model_fn.model  # the protocol the model samples with (caches, input_pos)
    return model_fn, model_fn


@torch.no_grad()
def token_logprobs(
    model_fn: Callable[[torch.Tensor], Any] | ModelAdapter,
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
            first item they are, or an object or dict with ``logits``); or a module or `ModelAdapter`, scored by the
            protocol it samples with (`~ModelAdapter.sequence_logits`: a gpt-fast model with fresh caches and
            ``input_pos``, nanoGPT with ``targets`` so that it returns every position, a plain one as
            ``model(ids)``), its state left as it was.
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
    check_int("context_length", context_length, allow_none=True)
    ids = prompt + target
    if context_length is not None:
        ids = ids[-(context_length + 1):]  # the last token is never fed, so the input is at most context_length
    scored = min(len(target), len(ids) - 1)
    if scored == 0:
        return torch.empty(0)
    forward, holder = _forward_of(model_fn)
    device = torch.device(device) if device is not None else model_device(holder, torch.device("cpu"))
    inputs = torch.tensor([ids[:-1]], dtype=torch.long, device=device)  # (1, T)
    logits = output_logits(forward(inputs))
    length = inputs.shape[1]
    if logits.dim() != 3 or logits.shape[0] != 1 or logits.shape[1] != length:
        if length > 1 and (logits.dim() == 2 or (logits.dim() == 3 and logits.shape[1] == 1)):
            raise LastPositionOnlyError(
                f"scoring needs full-sequence logits (1, T, V) with T={length}, but the model returned only the last "
                f"position, shape {tuple(logits.shape)}; pass a callable that returns logits for every position"
            )
        raise ValueError(f"the model's logits must have shape (1, {length}, V), got {tuple(logits.shape)}")
    check_scorable(ids[-scored:], logits.shape[-1])
    targets = torch.tensor(ids[-scored:], dtype=torch.long, device=logits.device)  # (N,)
    # Position t predicts token t + 1: the last `scored` positions predict the last `scored` tokens.
    logprobs = torch.log_softmax(logits[0, -scored:].float(), dim=-1)  # (N, V)
    return logprobs.gather(-1, targets[:, None]).squeeze(-1).cpu()  # (N,)


def check_scorable(targets: Sequence[int], vocab: int) -> None:
    """Raise ``ValueError`` where a target id lies outside ``[0, vocab)``, the logits' vocabulary, naming the five
    smallest such ids."""
    if targets and (min(targets) < 0 or max(targets) >= vocab):
        bad = sorted({t for t in targets if not 0 <= t < vocab})
        raise ValueError(f"token ids must be in [0, {vocab}) to be scored against logits of vocabulary {vocab}, "
                         f"got {bad[:5]}")
