"""HF's logits processors by shorter computations, bit for bit: each returns what HF's own would, or None where it
cannot promise that (HF's own then runs).

The top-k keeps its ``k`` values and indices (a temperature before it applied to those alone); a top-p or min-p
after that top-k changes those ``k`` values alone; a top-p without a top-k takes its sorted values from numpy's
values-only sort.

Example::

    >>> scores = torch.tensor([[0.5, 3.0, -1.0, 2.0, 1.0]])
    >>> values, indices = top_k(lp.TopKLogitsWarper(2), scores, 0.5)  # a temperature 0.5, then top-k 2
    >>> values, indices
    (tensor([[6., 4.]]), tensor([[1, 3]]))
    >>> top_p_kept(lp.TopPLogitsWarper(0.5), values, vocab=5)  # HF's top-p keeps the first
    tensor([[6., -inf]])
"""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers.generation import logits_process as lp

__all__ = ["materialize", "min_p_kept", "softmax_at", "top_k", "top_p", "top_p_kept"]


def materialize(values: torch.Tensor, indices: torch.Tensor, vocab: int) -> torch.Tensor:
    """The whole rows `(B, V)`: ``values`` `(B, k)` at ``indices``, -inf everywhere else."""
    return values.new_full((values.shape[0], vocab), -math.inf).scatter_(1, indices, values)


def softmax_at(values: torch.Tensor, indices: torch.Tensor, vocab: int) -> torch.Tensor:
    """HF's softmax of the rows `materialize` builds, at ``indices`` `(B, k)`: every other entry's is 0."""
    return materialize(values, indices, vocab).softmax(dim=-1).gather(1, indices)


def top_k(warper: lp.TopKLogitsWarper, scores: torch.Tensor,
          divisor: float | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """What HF's top-k keeps of ``scores / divisor`` (a temperature's output, or ``scores`` itself): the values,
    descending, and their indices, `(B, k)` each, HF's bytes; None where one ``topk(k + 1)`` cannot promise them: the
    (k+1)-th value equal to the k-th (HF keeps both), a row with NaN, +inf or nothing finite, or ``k`` covering the
    whole row.

    A temperature divides every score by the same positive number, which keeps their order (two scores may become
    equal, never swap): where the k-th quotient is above the (k+1)-th, the top k of ``scores`` are the top k of the
    quotients, and dividing those k values gives HF's bytes without dividing the whole rows."""
    k = warper.top_k  # HF's constructor made it at least `min_tokens_to_keep`
    if k >= scores.shape[1]:
        return None
    values, indices = scores.topk(k + 1, dim=-1)  # (B, k + 1), descending
    if divisor is not None:
        values = values / divisor  # HF's `scores / temperature`, on these entries
    # A row's sum is NaN when the row holds a NaN, whichever end topk sorts it to.
    unique = (values[:, k - 1] > values[:, k]) & values[:, 0].isfinite() & ~scores.sum(dim=-1).isnan()
    if not bool(unique.all()):
        return None
    return values[:, :k], indices[:, :k]


def top_p(warper: lp.TopPLogitsWarper, scores: torch.Tensor) -> torch.Tensor | None:
    """HF's top-p output `(B, V)` without its sort of values and indices; None where the sorted values cannot tell
    which of the tokens HF removes (equal values on both sides of its cut), or a row holds NaN, +inf or nothing finite.

    HF sorts the scores ascending and removes the prefix whose cumulative probability is at most ``1 - top_p``. The
    cumulative probabilities are the softmax and cumsum of the sorted *values*, which numpy's values-only sort
    returns as torch.sort does (equal values are equal bytes; ``-0.0`` and ``0.0`` may trade places and give the same
    ``exp``). The same tensor through the same kernels gives HF's cumulative probabilities, bit for bit; HF then
    removes every score below the smallest one it keeps.
    """
    ascending = torch.from_numpy(np.sort(scores.detach().numpy(), axis=-1))  # (B, V): torch.sort's values
    if not bool(ascending[:, -1].isfinite().all()):  # NaN sorts last; +inf, or a row all -inf, makes softmax NaN
        return None
    cumulative = ascending.softmax(dim=-1).cumsum_(dim=-1)  # in place: a fresh tensor per step costs page faults
    lowest_kept = _lowest_kept(warper, ascending, cumulative)
    return None if lowest_kept is None else scores.masked_fill(scores < lowest_kept, -math.inf)


def top_p_kept(warper: lp.TopPLogitsWarper, values: torch.Tensor, vocab: int) -> torch.Tensor | None:
    """`top_p` on the output of a top-k that kept ``values`` `(B, k)`, descending, without a sort: HF's sorted row is
    ``[-inf] * (V - k)`` followed by them ascending, whose cumulative probability is 0 until them (torch's CPU cumsum
    adds in order), so that it is summed over those ``k`` alone. The kept values after the cut, or None."""
    batch, k = values.shape
    if warper.min_tokens_to_keep > k:
        return None
    ascending = values.flip(-1)
    at = torch.arange(vocab - k, vocab).expand(batch, k)
    lowest_kept = _lowest_kept(warper, ascending, softmax_at(ascending, at, vocab).cumsum_(dim=-1))
    return None if lowest_kept is None else values.masked_fill(values < lowest_kept, -math.inf)


def _lowest_kept(warper: lp.TopPLogitsWarper, ascending: torch.Tensor,
                 cumulative: torch.Tensor) -> torch.Tensor | None:
    """The smallest score HF's top-p keeps `(B, 1)`, from the end of its sorted row ``ascending`` and their cumulative
    probabilities (everything before them removed); None where equal values lie on both sides of the cut."""
    remove = cumulative <= (1 - warper.top_p)  # a prefix: the cumulative sum of probabilities never decreases
    remove[..., -warper.min_tokens_to_keep:] = False
    cut = remove.sum(dim=-1, keepdim=True)  # (B, 1): how many of these HF removes
    lowest_kept = ascending.gather(1, cut)
    highest_removed = ascending.gather(1, (cut - 1).clamp_(min=0))
    if bool(((cut > 0) & (highest_removed == lowest_kept)).any()):  # torch.sort's order of equal values decides
        return None
    return lowest_kept


def min_p_kept(warper: lp.MinPLogitsWarper, values: torch.Tensor, indices: torch.Tensor,
               vocab: int) -> torch.Tensor:
    """HF's min-p on rows that are -inf outside ``indices``, as their new ``values``: its softmax, threshold and
    comparison at those alone. HF's ``topk(probs, 1)`` keeps the most likely token, which the threshold never removes
    (``min_p <= 1``)."""
    probs = softmax_at(values, indices, vocab)
    return values.masked_fill(probs < warper.min_p * probs.amax(dim=-1, keepdim=True), -math.inf)
