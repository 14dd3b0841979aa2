"""HF's top-p, min-p and typical-p warpers, bit for bit, with less work than theirs.

``TopPLogitsWarper`` and ``TypicalLogitsWarper`` spend most of their time in ``torch.sort``, which orders the
whole vocabulary and its int64 indices; ``MinPLogitsWarper`` sorts nothing but takes a ``topk`` it rarely needs.
What each warper decides is a *cut*, and the cut is all we need to reproduce:

* **top-p**: HF sorts the scores ascending, and its cumulative probabilities come from softmax and cumsum over
  that sorted vector. A values-only sort (numpy's) gives the same vector: equal values are equal bytes (``-0.0``
  and ``0.0`` trade places at most, and both give the same ``exp(x - max)``), so the same kernels return the same
  cumulative probabilities. HF removes a prefix of the sorted order; its last removed value and first kept value
  give the cut. When they are equal (a tie across the cut, which torch.sort's order decides) we return None.
* **typical-p**: the order is by ``|-log p - entropy|`` and the cumulative mass is summed over the *logits* in that
  order, so the order itself is needed; and float32 keys collide (equal keys, different logits) in almost every row
  of a large vocabulary, where only torch.sort knows the order that HF's sum sees. So it sorts as HF does, and
  saves the scatter back: the cut is a bound on the keys, applied in the vocabulary's own order.
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
    ascending = torch.from_numpy(np.sort(scores.detach().numpy(), axis=-1))  # (B, V): torch.sort's values, no indices
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
    vocab = scores.shape[1]
    normalized = torch.nn.functional.log_softmax(scores, dim=-1)  # HF's arithmetic, on the same tensor
    p = torch.exp(normalized)
    ent = -(normalized * p).nansum(-1, keepdim=True)
    shifted = torch.abs((-normalized) - ent)  # (B, V)
    ordered, order = torch.sort(shifted, descending=False)  # HF's order: its sum below depends on it
    if bool(ordered[:, -1].isnan().any()):  # NaN sorts last
        return None
    cumulative = scores.gather(1, order).softmax(dim=-1).cumsum(dim=-1)
    last_ind = (cumulative < warper.mass).sum(dim=1).clamp_(max=vocab - 1)
    remove = shifted > ordered.gather(1, last_ind.view(-1, 1))  # HF removes every key above the cut's ...
    remove.scatter_(1, order[:, :warper.min_tokens_to_keep], False)  # ... except the first of its order
    return scores.masked_fill(remove, warper.filter_value)


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
