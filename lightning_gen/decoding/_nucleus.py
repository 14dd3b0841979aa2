"""HF's top-p, min-p and typical-p warpers, bit for bit, with less work than theirs.

``TopPLogitsWarper`` and ``TypicalLogitsWarper`` spend most of their time in ``torch.sort``, which orders the
whole vocabulary and its int64 indices; ``MinPLogitsWarper`` sorts nothing but takes a ``topk`` it rarely needs.
What each warper decides is a *cut*, and the cut is all we need to reproduce:

* **top-p**: HF sorts the scores ascending, and its cumulative probabilities come from softmax and cumsum over
  that sorted vector. A values-only sort (numpy's) gives the same vector: equal values are equal bytes (``-0.0``
  and ``0.0`` trade places at most, and both give the same ``exp(x - max)``), so the same kernels return the same
  cumulative probabilities. HF removes a prefix of the sorted order; its last removed value and first kept value
  give the cut. When they are equal (a tie across the cut, which torch.sort's order decides) we return None.
  Before any sort, the cut is sought among the scores within 30 nats of the largest (the rest hold ~1e-8 of the
  mass): HF's cumulative is ``cumsum(e) / sum(e)`` within ``2 V + 16`` roundings, and where every cumulative clears
  ``1 - top_p`` by that bound the cut stands without HF's bytes (peaked rows: a few hundred scores sorted, not V).
* **typical-p**: HF orders the tokens by their key ``|(-n) - entropy|`` (``n`` the log-softmax) and sums the
  probabilities in that order until ``mass``; it removes every key above the one where the sum gets there. The
  keys need no sort of their own: along ``n`` in ascending order (a values-only sort) they fall, then rise (the
  key of ``n`` is a rounded ``|n + entropy|``, monotone on each side), so the tokens with keys <= t are a span of
  that order, found by two binary searches, and their mass is a difference of two prefix sums. A search over t
  finds the cut; where the keys within 8 nats of 0 hold ``mass``, only those are sorted. HF sums in its own
  order, which differs from ours among equal keys and may move a float32 sum by ``V - 1`` roundings: the cut
  stands where its group of equal keys clears ``mass`` by that bound on both sides, and rows where it does not
  are HF's own (each row is sorted on its own, as in HF's batch). With
  ``min_tokens_to_keep > 1`` the first tokens of torch.sort's order matter: one values-only sort of 64-bit
  words (each key's bits and its index) gives the order up to equal keys, under the same bound.
* **min-p**: HF's own arithmetic, less the ``topk`` that keeps the most probable token, which ``probs < min_p * max``
  never removes (``min_p <= 1``); with ``min_tokens_to_keep > 1`` HF's warper runs.

Each warper's decision is a `Cut`: the entries whose compared values (the scores, probabilities or log-softmax)
lie within a range per row, and the rows HF's own warper decided. `apply` turns it into exactly what the warper
would return (same dtype, same bytes); `kept` lists the entries it keeps, so that a draw can be decided on those
alone (`lightning_gen.decoding._candidates`). Each function returns None where it cannot promise HF's bytes (a tie
at the cut, NaN or infinity, a dtype or device it does not cover); the caller then calls the warper.

Example::

    >>> from transformers.generation import logits_process as lp
    >>> scores = torch.randn(4, 10000, generator=torch.Generator().manual_seed(0))
    >>> ids = torch.zeros(4, 1, dtype=torch.long)
    >>> warper = lp.TopPLogitsWarper(0.9)
    >>> torch.equal(top_p(warper, scores), warper(ids, scores))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.generation import logits_process as lp

__all__ = ["COVERED", "CUTS", "Cut", "apply", "kept", "min_p", "min_p_cut", "top_p", "top_p_cut", "typical_p",
           "typical_p_cut", "warp"]

_NEG_INF = float("-inf")
_PROBES = 256  # typical-p's search: thresholds tried per row and round
_INF_BITS = 0x7F800000  # the bits of float32 +inf: the largest key typical-p's search can reach
# Typical-p without top-k first looks at the keys |log p + entropy| up to this many nats: a peaked row's cut
# is well within it (a fraction of a nat to ~2 on GPT-2-sized rows), and those tokens are a handful.
_NEAR = 8.0
# Top-p without top-k first decides on the scores within this many nats of each row's largest (a few hundred to a
# few thousand of GPT-2's): the others hold less than V * exp(-30), about 5e-9 of the mass at V = 50257.
_TOP_SPAN = 30.0


def _covers(scores: torch.Tensor) -> bool:
    return scores.dtype == torch.float32 and scores.is_cpu and scores.dim() == 2 and scores.shape[1] > 1


@dataclass(frozen=True)
class Cut:
    """What a warper keeps: in each row, the entries whose ``values`` `(B, V)` lie in ``[low, high]`` (`(B, 1)`
    each; ``high`` None for no upper end), except in the rows of ``own``: ``(rows, out)``, HF's own output for them."""

    values: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor | None = None
    own: tuple[torch.Tensor, torch.Tensor] | None = None

    def keep(self) -> np.ndarray:
        """Which entries the cut keeps, `(B, V)` bool, outside the rows of ``own`` (numpy compares in one pass)."""
        values = self.values.detach().numpy()
        keep = values >= self.low.numpy()
        if self.high is not None:
            keep &= values <= self.high.numpy()
        return keep


def apply(cut: Cut, scores: torch.Tensor, filter_value: float) -> torch.Tensor:
    """The warper's output: ``scores`` with ``filter_value`` wherever ``cut`` removes. `(B, V)`"""
    out = torch.from_numpy(np.where(cut.keep(), scores.detach().numpy(), np.float32(filter_value)))
    if cut.own is not None:
        out[cut.own[0]] = cut.own[1]
    return out


def kept(cut: Cut) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The entries ``cut`` keeps, row by row: indices `(B, n)` and which of them are real `(B, n)` (rows keep
    different numbers; the rest is padding, index 0). None where a row keeps nothing. For a filter value of -inf."""
    keep = cut.keep()
    if cut.own is not None:
        keep[cut.own[0].numpy()] = (cut.own[1] > _NEG_INF).numpy()
    flat, rows, at, counts = _by_row(keep)
    if not counts.all():
        return None
    indices = np.zeros((keep.shape[0], int(counts.max())), dtype=np.int64)
    real = np.zeros(indices.shape, dtype=bool)
    indices[rows, at] = flat - rows * keep.shape[1]
    real[rows, at] = True
    return torch.from_numpy(indices), torch.from_numpy(real)


def _by_row(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The True entries of ``mask`` `(B, V)`, row by row: their flat indices (row-major), rows, places within their
    rows, and how many each row has `(B,)`."""
    flat = np.flatnonzero(mask)
    rows = flat // mask.shape[1]
    counts = np.bincount(rows, minlength=mask.shape[0])
    return flat, rows, np.arange(flat.size) - (np.cumsum(counts) - counts)[rows], counts


def _sorted_where(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``values`` `(B, V)` where ``mask`` holds, each row ascending and padded in front with -inf to a common
    width `(B, n)`, and how many each row has `(B,)`; None where a row has more than a quarter of V (sort them all)."""
    flat, rows, at, counts = _by_row(mask)
    width = int(counts.max())
    if width > values.shape[1] // 4:
        return None
    out = np.full((values.shape[0], width), -np.inf, dtype=np.float32)
    out[rows, at] = values.reshape(-1)[flat]
    out.sort(axis=-1)
    return out, counts


def top_p(warper: lp.TopPLogitsWarper, scores: torch.Tensor) -> torch.Tensor | None:
    """``warper(input_ids, scores)`` `(B, V)`, or None (see the module's docstring)."""
    cut = top_p_cut(warper, scores)
    return None if cut is None else apply(cut, scores, warper.filter_value)


def top_p_cut(warper: lp.TopPLogitsWarper, scores: torch.Tensor) -> Cut | None:
    """What `top_p` keeps: the scores from the smallest one HF keeps. None as `top_p`."""
    if not _covers(scores):
        return None
    kept = _top_p_near_the_top(warper, scores)
    if kept is not None:
        return Cut(scores, kept)
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
    return Cut(scores, kept)  # HF removes `scores < kept`: no NaN here


def _top_p_near_the_top(warper: lp.TopPLogitsWarper, scores: torch.Tensor) -> torch.Tensor | None:
    """The smallest score HF's top-p keeps `(B, 1)`, decided on the scores within `_TOP_SPAN` of each row's largest,
    or None where a decision is within its rounding bound (the caller then sorts every score).

    HF's float32 cumulative probability at a sorted position is ``C = sum(e up to there) / sum(e)`` (``e`` the exp
    of each score less the largest) within ``(2 V + 16)`` roundings: its softmax sums ``V`` terms (and so might a
    float32 cumsum; torch's accumulates in float64). The scores further
    down hold less than ``V * exp(-_TOP_SPAN)`` of the mass together, so they are all removed wherever the cut is
    clear of that, and ``C`` at the others is their own ``cumsum(e) / sum(e)`` in float64 up to that amount."""
    vocab = scores.shape[1]
    values = scores.detach().numpy()
    top = values.max(axis=-1, keepdims=True)  # (B, 1); NaN where a row has one
    if not np.isfinite(top).all():  # NaN, +inf, or a row all -inf
        return None
    near = _sorted_where(values, values >= top - np.float32(_TOP_SPAN))  # padded in front: e == 0 there
    if near is None or near[1].min() <= warper.min_tokens_to_keep:
        return None
    ascending = near[0]
    width = ascending.shape[1]
    z = ascending - top  # (B, n) <= 0, float32 as softmax rounds it
    e = np.exp(z.astype(np.float64))
    cumulative = np.cumsum(e, axis=-1) / e.sum(axis=-1, keepdims=True)  # (B, n); the rest adds at most `tail`
    tail = vocab * math.exp(-_TOP_SPAN)
    limit = 1 - warper.top_p
    if limit <= 4 * tail:  # the scores further down may be kept
        return None
    remove = cumulative <= limit
    keep = warper.min_tokens_to_keep
    remove[:, width - keep:] = False
    # HF's roundings (twice V: a cumsum that accumulated in float32 would add V more), exp's argument's (|z| <= span)
    bound = (2 * vocab + 16) * 2.0 ** -24 + _TOP_SPAN * 2.0 ** -22
    close = np.abs(cumulative - limit) <= cumulative * bound + 2.0 ** -24 + 2 * tail
    close[:, width - keep:] = False
    if close.any():
        return None
    cut = remove.sum(axis=-1, keepdims=True)  # (B, 1): how many of `ascending` HF removes (its first ones)
    kept = np.take_along_axis(ascending, cut, axis=-1)
    removed = np.take_along_axis(ascending, np.maximum(cut - 1, 0), axis=-1)
    if ((removed == kept) & (cut > 0)).any():  # equal values on both sides: torch.sort's order decides
        return None
    return torch.from_numpy(kept)


def min_p(warper: lp.MinPLogitsWarper, scores: torch.Tensor) -> torch.Tensor | None:
    """``warper(input_ids, scores)`` `(B, V)`, or None (see the module's docstring)."""
    cut = min_p_cut(warper, scores)
    return None if cut is None else apply(cut, scores, warper.filter_value)


def min_p_cut(warper: lp.MinPLogitsWarper, scores: torch.Tensor) -> Cut | None:
    """What `min_p` keeps: the probabilities from ``min_p`` times the largest one. None as `min_p`."""
    if not _covers(scores) or warper.min_tokens_to_keep != 1:
        return None
    probs = torch.softmax(scores, dim=-1)
    top = probs.amax(dim=-1, keepdim=True)  # (B, 1)
    if bool(top.isnan().any()):  # the topk HF keeps would then pick an index of its own
        return None
    return Cut(probs, warper.min_p * top)  # HF's own product; it removes `probs < min_p * top`


def typical_p(warper: lp.TypicalLogitsWarper, scores: torch.Tensor,
              candidates: torch.Tensor | None = None) -> torch.Tensor | None:
    """``warper(input_ids, scores)`` `(B, V)`, or None (see the module's docstring). ``candidates`` `(B, k)`, when
    given, holds every index whose score may be finite (top-k's): the search then runs on those alone."""
    if not _covers(scores):
        return None
    if warper.min_tokens_to_keep != 1:  # the first tokens of torch.sort's order are kept: only the order tells
        return _typical_p_ordered(warper, scores)
    cut = typical_p_cut(warper, scores, candidates)
    return None if cut is None else apply(cut, scores, warper.filter_value)


def typical_p_cut(warper: lp.TypicalLogitsWarper, scores: torch.Tensor,
                  candidates: torch.Tensor | None = None) -> Cut | None:
    """What `typical_p` keeps (``min_tokens_to_keep`` 1): a span of log-softmax values. None as `typical_p`."""
    if not _covers(scores) or warper.min_tokens_to_keep != 1:
        return None
    normalized = torch.nn.functional.log_softmax(scores, dim=-1)  # HF's arithmetic, on the same tensor
    p = torch.exp(normalized)
    ent = -(normalized * p).nansum(-1, keepdim=True)  # (B, 1)
    batch, vocab = scores.shape
    terms = vocab  # the most non-zero terms in any of the sums behind HF's float32 values
    # `normalized` ascending, values only: the keys |(-n) - ent| along it fall, then rise (see the docstring).
    reach = _INF_BITS  # the bits of the largest key searched: all of them
    if candidates is not None:
        # Outside the candidates every log-softmax is -inf: key inf, probability 0. The order, the spans and the
        # mass are the candidates' alone, and the sums behind HF's values have at most k non-zero terms.
        terms = candidates.shape[1]
        ascending = np.sort(normalized.gather(1, candidates).numpy(), axis=-1)  # (B, k), NaN last
        if np.isnan(ascending[:, -1]).any():  # NaN or +inf in a row, or a row all -inf
            return None
    else:
        values = normalized.detach().numpy()
        if np.isnan(values.sum(axis=-1)).any():  # NaN or +inf in a row, or a row all -inf: log-softmax NaN
            return None
        ascending = _near_entropy(values, ent.numpy())  # (B, n): the keys <= _NEAR, or None
        if ascending is None:
            ascending = np.sort(values, axis=-1)
        else:
            reach = int(np.float32(_NEAR).view(np.int32))
    ascending = torch.from_numpy(ascending)
    mass = _prefix_mass(ascending)
    # Our probabilities' own sum: their masses are taken relative to it, which cancels the error that log-softmax's
    # float32 sum put into every one of them alike (a common factor, as `n - log S` is a common shift).
    total = p.sum(dim=-1, keepdim=True, dtype=torch.float64)  # (B, 1)
    if reach != _INF_BITS and not bool((mass[:, -1:].double() / total >= warper.mass).all()):
        # A row's keys <= _NEAR do not hold `mass`, so its cut lies further out: every key, a values-only sort.
        ascending, reach = torch.from_numpy(np.sort(values, axis=-1)), _INF_BITS
        mass = _prefix_mass(ascending)
    offset = ascending + ent  # ascending: exactly -((-n) - ent), so key = |offset|

    def within(t: torch.Tensor, strict: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens whose key is <= t (< t), a span [start, end) of `ascending`, for each row's t `(B, n)`."""
        start = torch.searchsorted(offset, -t, right=strict)
        end = torch.searchsorted(offset, t, right=not strict)
        return start, torch.maximum(start, end)

    def mass_of(span: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return (mass.gather(1, span[1]) - mass.gather(1, span[0])).double() / total

    # The smallest key t whose keys <= t hold `mass`: a search over the bits of t (non-negative floats order as
    # their bits do), 256 candidates per row at a time (4 rounds for 31 bits: each round is ~10 small ops, whose
    # fixed cost exceeds the searches'), O(B log V) each; `high` always holds the mass, `low` never.
    low = torch.full((batch, 1), -1, dtype=torch.int64)
    high = torch.full((batch, 1), reach, dtype=torch.int64)  # +inf, or _NEAR where those keys hold the mass
    steps = torch.arange(1, _PROBES + 1, dtype=torch.int64)  # (256,)
    while bool((high - low > 1).any()):
        width = (high - low + _PROBES - 1) // _PROBES
        candidates = torch.minimum(low + width * steps, high)  # (B, 256) ascending, the last one `high`
        enough = mass_of(within(candidates.int().view(torch.float32), False)) >= warper.mass
        first = enough.int().argmax(dim=-1, keepdim=True)  # the first candidate that holds it (`high` does)
        high = candidates.gather(1, first)
        low = torch.where(first > 0, candidates.gather(1, (first - 1).clamp_(min=0)), low)
    cut = high.int().view(torch.float32)  # (B, 1)
    kept = within(cut, False)
    # HF's cumulative mass comes from another order of the same tokens: a softmax sum that may move by (V - 1)
    # roundings (2**-24 each, and a second-order 1 %), one rounding more in the softmax and the cumsum, and on our
    # side exp's own and the rounding of each `n - log S` (|n| roundings, weighted by the probabilities: at most
    # ~10 log V roundings in all; log-softmax's own sum cancels in `total`) and the float32 `mass`. The cut stands
    # where its group of equal keys clears `mass` by all of that on both sides.
    relative, absolute = (terms * 1.01 + 32) * 2.0 ** -24, 2.0 ** -16
    clear = ((mass_of(within(cut, True)) * (1 + relative) + absolute < warper.mass)
             & (mass_of(kept) * (1 - relative) - absolute >= warper.mass)).view(-1)  # (B,)
    # Keys <= cut are the values of `normalized` between the span's first and last: remove the others.
    lowest = ascending.gather(1, kept[0])
    highest = ascending.gather(1, kept[1] - 1)
    own = None
    if not bool(clear.all()):  # those rows take HF's warper, torch.sort's order (HF's rows are each their own)
        rows = (~clear).nonzero().squeeze(1)
        own = (rows, warper(None, scores[rows]))
    return Cut(normalized, lowest, highest, own)


def _near_entropy(values: np.ndarray, ent: np.ndarray) -> np.ndarray | None:
    """The log-softmax ``values`` `(B, V)` whose keys ``|values + ent|`` are <= `_NEAR`, each row ascending and
    padded in front with -inf (key inf, probability 0) to a common width `(B, n)`; None where that is most of them.

    Where those keys hold `mass`, the cut's key is <= `_NEAR`, and every set of keys <= t the search weighs is a
    span of this vector: a sort of a few tokens instead of the vocabulary (a peaked row keeps a handful)."""
    near = _sorted_where(values, np.abs(values + ent) <= np.float32(_NEAR))  # HF's keys |(-n) - ent|, bit for bit
    return None if near is None else near[0]


def _prefix_mass(ascending: torch.Tensor) -> torch.Tensor:
    """``mass[:, j]``, the probability of the first ``j`` tokens of ``ascending`` log-softmax values. `(B, n + 1)`"""
    mass = ascending.new_empty(ascending.shape[0], ascending.shape[1] + 1)
    mass[:, 0] = 0
    torch.cumsum(torch.exp(ascending), dim=-1, out=mass[:, 1:])
    return mass


def _typical_p_ordered(warper: lp.TypicalLogitsWarper, scores: torch.Tensor) -> torch.Tensor | None:
    """`typical_p` by one sort of the keys and their indices: any ``min_tokens_to_keep``."""
    batch, vocab = scores.shape
    normalized = torch.nn.functional.log_softmax(scores, dim=-1)  # HF's arithmetic, on the same tensor
    p = torch.exp(normalized)
    ent = -(normalized * p).nansum(-1, keepdim=True)
    shifted = torch.abs((-normalized) - ent)  # (B, V)
    order = _order(shifted)  # ascending, equal keys by index
    ordered = shifted.gather(1, order)
    if bool(ordered[:, -1].isnan().any()):  # NaN sorts last
        return None
    cumulative = scores.gather(1, order).softmax(dim=-1).cumsum(dim=-1)
    last_ind = (cumulative < warper.mass).sum(dim=1).clamp_(max=vocab - 1)
    # torch.sort orders equal keys its own way, and so permutes logits within groups of equal keys: the same
    # multiset, whose float32 sum may differ by (V - 1) roundings, so every cumulative value at a group's end by
    # `slack` of itself. The cut stands if the group it falls in stays clear of `mass` by that much on both sides.
    slack = (vocab + 8) * 2.0 ** -23
    key = ordered.gather(1, last_ind.view(-1, 1))  # (B, 1)
    first = torch.searchsorted(ordered, key, right=False)  # the cut's group: [first, past)
    past = torch.searchsorted(ordered, key, right=True)
    before = cumulative.gather(1, (first - 1).clamp_(min=0))
    at_end = cumulative.gather(1, (past - 1).clamp_(max=vocab - 1))
    clear = (((first == 0) | (before * (1 + slack) < warper.mass))
             & ((past >= vocab) | (at_end * (1 - slack) >= warper.mass))).view(-1)  # (B,)
    bound = key
    if not bool(clear.all()):  # those rows take torch.sort's own order (each row is sorted on its own)
        rows = (~clear).nonzero().squeeze(1)
        ordered_rows, order_rows = torch.sort(shifted[rows], descending=False)
        cut = (scores[rows].gather(1, order_rows).softmax(dim=-1).cumsum(dim=-1) < warper.mass).sum(dim=1)
        bound = bound.clone()
        bound[rows] = ordered_rows.gather(1, cut.clamp_(max=vocab - 1).view(-1, 1))
        order = order.clone()
        order[rows] = order_rows
    remove = shifted > bound  # HF removes every key above the cut's ...
    keep = warper.min_tokens_to_keep
    if keep > 1:  # ... except the first `keep` of its order, which only torch.sort knows among equal keys
        ordered_keep = ordered[:, :keep + 1] if keep < vocab else ordered
        if keep < vocab and bool((ordered_keep[:, keep - 1] == ordered_keep[:, keep]).any()):
            return None
    remove.scatter_(1, order[:, :keep], False)
    return scores.masked_fill(remove, warper.filter_value)


def _order(keys: torch.Tensor) -> torch.Tensor:
    """The ascending order of non-negative float32 ``keys`` `(B, V)` (NaN last), equal keys by index: one values-only
    sort of 64-bit words ``key bits << 32 | index`` (the bits of non-negative floats order as the floats do)."""
    bits = keys.contiguous().numpy().view(np.uint32).astype(np.uint64) << np.uint64(32)
    words = np.sort(bits | np.arange(keys.shape[1], dtype=np.uint64), axis=-1)
    return torch.from_numpy((words & np.uint64(0xFFFFFFFF)).astype(np.int64))


#: The warpers this module reproduces, and how.
COVERED: dict[type, Any] = {lp.TopPLogitsWarper: top_p, lp.MinPLogitsWarper: min_p, lp.TypicalLogitsWarper: typical_p}
#: Their cuts, ``(warper, scores) -> Cut | None``.
CUTS: dict[type, Any] = {lp.TopPLogitsWarper: top_p_cut, lp.MinPLogitsWarper: min_p_cut,
                         lp.TypicalLogitsWarper: typical_p_cut}


def warp(warper: Any, input_ids: torch.Tensor, scores: torch.Tensor,
         candidates: torch.Tensor | None = None) -> tuple[torch.Tensor, bool]:
    """``warper(input_ids, scores)`` by this module's route where it can; returns the scores and whether the warper
    itself had to run (a fallback). ``candidates`` `(B, k)`: every index whose score may be finite, if known."""
    shortcut = COVERED.get(type(warper))
    if shortcut is typical_p:
        out = typical_p(warper, scores, candidates)
    else:
        out = shortcut(warper, scores) if shortcut is not None else None
    if out is None:
        return warper(input_ids, scores), shortcut is not None
    return out, False
