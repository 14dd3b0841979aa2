"""A known processor chain run step by step, with HF's bytes and fewer full-width passes.

`LogitsProcessorList` inspects every processor's signature at every call; a chain of known transformers classes
(see `lightning_gen.decoding._fastpath`) is simply called in order. Where the scores a processor receives are the
loop's own copy (it copies the logits as HF does, and every later tensor is a processor's fresh result), two
processors are run in place on them instead of through their own full-width copies:

* ``RepetitionPenaltyLogitsProcessor``: HF pads the scores by one column (a copy), gathers the scores of the
  sequence's tokens, penalises them and scatters them into a second copy, then slices the padding off (a strided
  view that the next operation reads slowly). In place: the same gather and the same arithmetic, scattered back
  into the scores. Tokens that occur several times get the same value from every occurrence, as in HF's scatter.
  Ids beyond the scores (HF's padding column) and a per-row ``prompt_ignore_length`` are left to HF's processor.
* ``NoRepeatNGramLogitsProcessor``: HF matches the last ``n - 1`` tokens against every window (small tensors),
  then builds a `(B, V + 1)` mask and fills through it. In place: the same matches, and ``-inf`` written at the
  banned tokens only.
* ``TemperatureLogitsWarper`` on scores the chain may write into (the copy, after a repetition penalty say): HF's
  ``scores / temperature`` into a new tensor; in place, the same division (the same kernel) into the scores.

Greedy's argmax (`argmax`) is numpy's, which returns the same index as torch's (first maximum, NaN counting as
the largest) at a quarter of the cost; `argmax_agrees` checks that against this torch once per process.

Example::

    >>> from transformers.generation import logits_process as lp
    >>> ids = torch.tensor([[1, 2, 1, 2]])
    >>> scores = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))
    >>> chain = (lp.RepetitionPenaltyLogitsProcessor(1.3), lp.NoRepeatNGramLogitsProcessor(2))
    >>> torch.equal(run(chain, ids, scores.clone(), owned=True), lp.LogitsProcessorList(chain)(ids, scores))
    True
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.generation import logits_process as lp

from lightning_gen.decoding import _nucleus as nucleus

__all__ = ["argmax", "argmax_agrees", "no_repeat_ngram_", "repetition_penalty_", "run", "temperature_"]


def repetition_penalty_(proc: lp.RepetitionPenaltyLogitsProcessor, input_ids: torch.Tensor,
                        scores: torch.Tensor) -> torch.Tensor | None:
    """``proc(input_ids, scores)``, written into ``scores`` `(B, V)` (CPU); None where HF's own must run."""
    ignore = proc.prompt_ignore_length
    if scores.dim() != 2 or not scores.is_cpu or not (ignore is None or type(ignore) is int):
        return None
    ids = input_ids[:, ignore:] if ignore is not None else input_ids
    if ids.dim() == 1:
        ids = ids.unsqueeze(1)
    if ids.numel() == 0:
        return scores
    if int(ids.max()) >= scores.shape[-1]:  # HF's padding column: ids past the scores
        return None
    score = scores.gather(1, ids)  # every occurrence reads the score before any is written
    score = torch.where(score < 0, score * proc.penalty, score / proc.penalty)
    return scores.scatter_(1, ids, score)


def no_repeat_ngram_(proc: lp.NoRepeatNGramLogitsProcessor, input_ids: torch.Tensor,
                     scores: torch.Tensor) -> torch.Tensor | None:
    """``proc(input_ids, scores)``, written into ``scores`` `(B, V)` (CPU); None where HF's own must run."""
    n = proc.ngram_size
    length = input_ids.shape[-1]
    if scores.dim() != 2 or input_ids.dim() != 2 or not scores.is_cpu:  # `nonzero` would wait for a device
        return None
    if length < n:  # no complete n-gram yet
        return scores
    windows = input_ids.unfold(1, n, 1)  # (B, L - n + 1, n)
    suffix = input_ids[:, length - n + 1:].unsqueeze(1)  # (B, 1, n - 1): the n-gram the next token would complete
    banned = (windows[..., :-1] == suffix).all(dim=-1) & (windows[..., -1] < scores.shape[-1])  # (B, L - n + 1)
    rows, at = banned.nonzero(as_tuple=True)
    scores[rows, windows[rows, at, -1]] = -float("inf")
    return scores


def temperature_(proc: lp.TemperatureLogitsWarper, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``proc(input_ids, scores)``, written into ``scores``."""
    return scores.div_(proc.temperature)


_NUMPY_ARGMAX_FROM = 8192

_IN_PLACE = {lp.RepetitionPenaltyLogitsProcessor: repetition_penalty_,
             lp.NoRepeatNGramLogitsProcessor: no_repeat_ngram_, lp.TemperatureLogitsWarper: temperature_}


def run(chain: Sequence[Any], input_ids: torch.Tensor, scores: torch.Tensor, *, owned: bool,
        sort_free: bool = False, stats: Any = None, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Known processors one after the other, as `LogitsProcessorList` calls two-argument processors. `(B, V)`

    Args:
        chain: Transformers processors of the classes `lightning_gen.decoding._fastpath` knows.
        input_ids: The sequences so far, `(B, T)`.
        scores: The scores, `(B, V)`.
        owned: Whether ``scores`` may be written into (the caller's own copy). Every tensor a processor returns
            that is not its input is that processor's fresh result, and may be.
        sort_free: Top-p, min-p and typical-p by `lightning_gen.decoding._nucleus` where it gives HF's bytes.
        stats: Counts ``nucleus_fallback`` when ``sort_free``.
        candidates: `(B, k)`, every index whose score may be finite (top-k's), for a chain of mask-only warpers.
    """
    for proc in chain:
        out = None
        in_place = _IN_PLACE.get(type(proc)) if owned else None
        if in_place is not None:
            out = in_place(proc, input_ids, scores)
        elif sort_free:
            out, fell_back = nucleus.warp(proc, input_ids, scores, candidates)
            stats.nucleus_fallback += fell_back
        if out is None:
            out = proc(input_ids, scores)
        owned = owned or out.untyped_storage().data_ptr() != scores.untyped_storage().data_ptr()
        scores = out
    return scores


@functools.cache
def argmax_agrees() -> bool:
    """Whether numpy's argmax over the last axis returns torch's on this machine: first index of the maximum,
    NaN above everything, ``-0.0`` equal to ``0.0``, rows of ``-inf``, strided rows (checked once per process)."""
    g = torch.Generator().manual_seed(7)
    cases = [torch.randn(5, 3001, generator=g), (torch.randn(6, 777, generator=g) * 2).round() / 2]
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1.0])
    for _ in range(4):
        cases.append(special[torch.randint(0, 6, (7, 513), generator=g)])
    cases.append(torch.full((2, 40), -float("inf")))
    cases.append(torch.randn(4, 1001, generator=g)[:, :1000])
    return all(torch.equal(torch.from_numpy(np.ascontiguousarray(c.numpy().argmax(-1))).long(), c.argmax(-1))
               for c in cases)


def argmax(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``scores.argmax(-1)`` `(B,)` and whether any row holds a NaN (0-dim bool), for float32 `(B, V)` on the CPU."""
    # Below a few thousand scores numpy's conversions cost more than torch's argmax.
    small = scores.numel() < _NUMPY_ARGMAX_FROM
    if small or scores.dtype != torch.float32 or not scores.is_cpu or scores.dim() != 2 or not argmax_agrees():
        tokens = torch.argmax(scores, dim=-1)
        return tokens, scores.gather(1, tokens.unsqueeze(1)).isnan().any()
    values = scores.detach().numpy()
    at = values.argmax(axis=-1)  # (B,)
    # argmax returns the index of a row's first NaN, if it has one: checking the chosen scores checks them all.
    invalid = bool(np.isnan(values[np.arange(values.shape[0]), at]).any())
    return torch.from_numpy(at.astype(np.int64, copy=False)), torch.tensor(invalid)
