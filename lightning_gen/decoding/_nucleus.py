"""HF's top-p, min-p and typical-p warpers, bit for bit, without sorting values and indices of the vocabulary.

``TopPLogitsWarper`` and ``TypicalLogitsWarper`` spend most of their time in ``torch.sort``, which orders the
whole vocabulary and its int64 indices; ``MinPLogitsWarper`` sorts nothing but takes a ``topk`` it rarely needs.
What each warper decides is a *cut*, and the cut is all we need to reproduce:

* **top-p**: HF sorts the scores ascending, and its cumulative probabilities come from softmax and cumsum over
  that sorted vector. A values-only sort (numpy's) gives the same vector: equal values are equal bytes (``-0.0``
  and ``0.0`` trade places at most, and both give the same ``exp(x - max)``), so the same kernels return the same
  cumulative probabilities. HF removes a prefix of the sorted order; its last removed value and first kept value
  give the cut. When they are equal (a tie across the cut, which torch.sort's order decides) we return None.
* **typical-p**: the order is by ``|-log p - entropy|`` and the cumulative mass is summed over the *logits* in that
  order, so the order itself is needed: one values-only sort of 64-bit words that hold each key and its index
  (several times faster than torch.sort of values and indices). Where two equal keys hold different logits, their
  order changes the sum, and only torch.sort knows it: those rows are sorted by torch.sort (at large vocabularies,
  where float32 keys collide often, most rows).
* **min-p**: HF's own arithmetic, less the ``topk`` that keeps the most probable token, which ``probs < min_p * max``
  never removes (``min_p <= 1``); with ``min_tokens_to_keep > 1`` HF's warper runs.

Each function returns exactly what the warper would (same dtype, same bytes), or None where it cannot promise that
(a tie at the cut, NaN or infinity, a dtype or device it does not cover); the caller then calls the warper.

Example::

    >>> from transformers.generation import logits_process as lp
    >>> scores = torch.randn(4, 10000, generator=torch.Generator().manual_seed(0))
    >>> ids = torch.zeros(4, 1, dtype=torch.long)
    >>> warper = lp.TopPLogitsWarper(0.9)
    >>> torch.equal(top_p(warper, scores), warper(ids, scores))
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.generation import logits_process as lp

__all__ = ["COVERED", "min_p", "top_p", "typical_p", "warp"]


def _covers(scores: torch.Tensor) -> bool:
    return scores.dtype == torch.float32 and scores.is_cpu and scores.dim() == 2 and scores.shape[1] > 1


def top_p(warper: lp.TopPLogitsWarper, scores: torch.Tensor) -> torch.Tensor | None:
    """``warper(input_ids, scores)`` `(B, V)`, or None (see the module's docstring)."""
    if not _covers(scores):
        return None
    ascending = torch.from_numpy(np.sort(scores.numpy(), axis=-1))  # (B, V): torch.sort's values, no indices
    last = ascending[:, -1]
    if not bool(last.isfinite().all()):  # NaN sorts last; +inf, or a row all -inf, makes softmax NaN
        return None
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)  # HF's bytes: the same tensor through the same kernels
    remove = cumulative <= (1 - warper.top_p)  # a prefix: cumsum of non-negative values never decreases
    remove[..., -warper.min_tokens_to_keep:] = 0
    cut = remove.sum(dim=-1, keepdim=True)  # (B, 1): how many HF removes; at most V - 1
    kept = ascending.gather(1, cut)  # (B, 1) the smallest kept value
    removed = ascending.gather(1, (cut - 1).clamp_(min=0))
    if bool(((cut > 0) & (removed == kept)).any()):  # equal values on both sides: torch.sort's order decides
        return None
    return scores.masked_fill(scores < kept, warper.filter_value)


def min_p(warper: lp.MinPLogitsWarper, scores: torch.Tensor) -> torch.Tensor | None:
    """``warper(input_ids, scores)`` `(B, V)`, or None (see the module's docstring)."""
    if not _covers(scores) or warper.min_tokens_to_keep != 1:
        return None
    probs = torch.softmax(scores, dim=-1)
    top = probs.amax(dim=-1, keepdim=True)  # (B, 1)
    if bool(top.isnan().any()):  # the topk HF keeps would then pick an index of its own
        return None
    return scores.masked_fill(probs < warper.min_p * top, warper.filter_value)


def typical_p(warper: lp.TypicalLogitsWarper, scores: torch.Tensor) -> torch.Tensor | None:
    """``warper(input_ids, scores)`` `(B, V)`, or None (see the module's docstring)."""
    if not _covers(scores):
        return None
    vocab, keep = scores.shape[1], warper.min_tokens_to_keep
    normalized = torch.nn.functional.log_softmax(scores, dim=-1)  # HF's arithmetic, on the same tensor
    p = torch.exp(normalized)
    ent = -(normalized * p).nansum(-1, keepdim=True)
    shifted = torch.abs((-normalized) - ent)  # (B, V)
    order = _order(shifted)  # (B, V) int64
    ordered = shifted.gather(1, order)
    if bool(ordered[:, -1].isnan().any()):  # NaN sorts last
        return None
    ordered_logits = scores.gather(1, order)
    # Equal keys with different logits: their order (torch.sort's choice) changes the sum below. Those rows take
    # torch.sort's order itself, which sorts each row on its own, as in HF's batch.
    torn = ((ordered[:, 1:] == ordered[:, :-1]) & (ordered_logits[:, 1:] != ordered_logits[:, :-1])).any(dim=1)
    if bool(torn.any()):
        rows = torn.nonzero().squeeze(1)
        order[rows] = torch.sort(shifted[rows], descending=False).indices
        ordered_logits[rows] = scores[rows].gather(1, order[rows])
        ordered[rows] = shifted[rows].gather(1, order[rows])
    cumulative = ordered_logits.softmax(dim=-1).cumsum(dim=-1)
    last_ind = (cumulative < warper.mass).sum(dim=1).clamp_(max=vocab - 1)
    bound = ordered.gather(1, last_ind.view(-1, 1))  # (B, 1): HF removes every key above it ...
    if keep > 1:  # ... except the first `keep` of its order
        kth = ordered[:, min(keep, vocab) - 1:min(keep, vocab)]
        if keep < vocab and bool(((kth > bound) & (ordered[:, keep:keep + 1] == kth)).any()):
            return None
        bound = torch.maximum(bound, kth)
    return scores.masked_fill(shifted > bound, warper.filter_value)


def _order(keys: torch.Tensor) -> torch.Tensor:
    """The ascending order of non-negative float32 ``keys`` `(B, V)` (NaN last), equal keys by index: one values-only
    sort of 64-bit words ``key bits << 32 | index`` (the bits of non-negative floats order as the floats do),
    about twice as fast as an argsort."""
    bits = keys.contiguous().numpy().view(np.uint32).astype(np.uint64) << np.uint64(32)
    words = np.sort(bits | np.arange(keys.shape[1], dtype=np.uint64), axis=-1)
    return torch.from_numpy((words & np.uint64(0xFFFFFFFF)).astype(np.int64))


#: The warpers this module reproduces, and how.
COVERED: dict[type, Any] = {lp.TopPLogitsWarper: top_p, lp.MinPLogitsWarper: min_p, lp.TypicalLogitsWarper: typical_p}


def warp(warper: Any, input_ids: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``warper(input_ids, scores)`` by this module's route where it can; returns the scores and whether the warper
    itself had to run (a fallback)."""
    shortcut = COVERED.get(type(warper))
    out = shortcut(warper, scores) if shortcut is not None else None
    if out is None:
        return warper(input_ids, scores), shortcut is not None
    return out, False
