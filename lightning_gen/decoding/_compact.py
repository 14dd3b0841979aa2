"""The softmax of long rows that are -inf outside a few candidates, computed over the candidates alone, bit for bit.

After a top-k, every score outside its ``k`` candidates is -inf, yet HF's top-p, its min-p and the sampling step
each take a softmax over the whole rows: ``B x V`` entries for ``B x k`` that matter. torch's CPU softmax over the
last dimension reduces each row in vector lanes (entry ``i`` in lane ``i mod L``, ``L`` the vector width in floats,
a divisor of 64), adding a lane's entries in index order before it adds the lanes together, and writes
``exp(x - max) * (1 / sum)``. An entry of -inf adds ``exp(-inf) = 0``, which leaves every lane's sum as it was. So a
shorter row holding the same finite entries in the same order, each at a position congruent to its own modulo 64,
has the same maximum, the same lane sums and the same outputs at those entries: `softmax_at` builds that row (at
most ``64 k`` long) instead of the whole one. `compaction_exact` checks this premise against torch's kernel once per
process; where it fails, `softmax_at` takes the softmax of the whole rows.

Example::

    >>> values = torch.tensor([[2.0, 0.5, -1.0]])
    >>> indices = torch.tensor([[40000, 7, 123]])
    >>> full = torch.full((1, 50257), -math.inf).scatter_(1, indices, values).softmax(dim=-1)
    >>> torch.equal(softmax_at(values, indices, 50257), full.gather(1, indices))
    True
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["compaction_exact", "materialize", "softmax_at"]

_PERIOD = 64  # a multiple of every vector width (in floats) torch's CPU kernels use


def materialize(values: torch.Tensor, indices: torch.Tensor, vocab: int) -> torch.Tensor:
    """The whole rows `(B, V)`: ``values`` `(B, k)` at ``indices``, -inf everywhere else."""
    return values.new_full((values.shape[0], vocab), -math.inf).scatter_(1, indices, values)


def softmax_at(values: torch.Tensor, indices: torch.Tensor, vocab: int) -> torch.Tensor:
    """``materialize(values, indices, vocab).softmax(-1).gather(1, indices)`` `(B, k)`, the same bits, over a row of
    at most ``64 k`` entries where `compaction_exact`.

    Args:
        values: float32 scores `(B, k)` on the CPU, the largest of each row finite.
        indices: Their distinct positions in rows of ``vocab`` entries `(B, k)`.
        vocab: The length ``V`` of the whole rows.
    """
    if vocab <= _PERIOD * values.shape[1] or not compaction_exact():
        return materialize(values, indices, vocab).softmax(dim=-1).gather(1, indices)
    return _compact_softmax(values, indices)


def _compact_softmax(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    ascending, order = indices.sort(dim=-1)
    # Each entry's compact position: congruent to its index modulo 64, the first such after the previous entry's.
    steps = (ascending[:, 1:] - ascending[:, :-1] - 1).remainder_(_PERIOD).add_(1)
    positions = torch.cat([ascending[:, :1].remainder(_PERIOD), steps], dim=1).cumsum_(dim=1)
    width = max(int(positions[:, -1].max()) + 1, _PERIOD)
    compact = values.new_full((values.shape[0], width), -math.inf).scatter_(1, positions, values.gather(1, order))
    probs = compact.softmax(dim=-1).gather(1, positions)  # in ascending order of index
    return torch.empty_like(probs).scatter_(1, order, probs)


@functools.cache
def compaction_exact() -> bool:
    """Whether this torch's CPU softmax gives `softmax_at`'s compact rows the whole rows' bits: checked once per
    process, on rows of several lengths with candidates adjacent, far apart, sharing residues, at both ends and -inf."""
    generator = torch.Generator().manual_seed(20261207)
    for vocab, k in ((50257, 50), (4099, 40), (128256, 7)):
        indices = torch.stack([torch.randperm(vocab, generator=generator)[:k] for _ in range(3)])
        indices[0, :4] = torch.tensor([0, 1, 64, vocab - 1])
        indices[1, :3] = torch.tensor([5, 69, 133])
        values = torch.randn(3, k, generator=generator) * 4
        values[2, 1::3] = -math.inf
        full = materialize(values, indices, vocab).softmax(dim=-1).gather(1, indices)
        if not torch.equal(_compact_softmax(values, indices), full):
            return False
    return True
