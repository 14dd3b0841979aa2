"""Exact fast sampling on CPU: HF's tokens and RNG state, bit for bit, at a fraction of the cost.

HF's sampling step spends its time in two places on a large vocabulary, neither of which decides anything:

* ``TopPLogitsWarper`` sorts the whole vocabulary `(B, V)`, although after ``TopKLogitsWarper`` only ``k``
  candidates are finite.
* ``torch.multinomial`` draws one exponential ``q`` per vocabulary entry and takes ``argmax(p / q)``; each ``q``
  is ``float32(-log1p(-u))`` of a float64 uniform ``u``, computed by scalar libm, ~35 ns apiece.

This module produces the same tokens by a shorter route, and hands each step back to HF's own code wherever it
cannot guarantee that:

1. **Top-k, then top-p on the candidates.** One ``topk(k + 1)`` gives the candidates; HF keeps every value >= the
   k-th, so the step falls back when the (k+1)-th value ties the k-th (or on NaN / +inf). HF's top-p sorts the
   masked vector ascending: exactly ``[-inf] * (V - k) + ascending(candidates)``. We build that tensor directly,
   with the same shape and dtype, so the same softmax and cumsum kernels see the same bytes and return the same
   cumulative probabilities. Only the order of *tied* values can differ from ``torch.sort``'s, which matters only
   when tied values fall on both sides of the cut: the step then falls back.
2. **The draw.** ``uniform_`` on a float64 `(B, V)` tensor consumes the generator exactly as ``exponential_`` on
   the float32 one (one 64-bit draw per element, in memory order), so the RNG state afterwards is identical. The
   exponentials are then computed only where they can win: at the candidates (or, without top-k, everywhere but
   with a vectorised ``log1p``). Vectorised and scalar ``log1p`` agree within 2 ulp of float64; a value whose
   float32 rounding could still depend on that (within 2**-48 relative of a float32 rounding boundary) is
   recomputed by replaying torch's own ``exponential_`` at its position. Ties in ``argmax`` go to the lowest
   index, as in ``argmax``. A zero uniform (whose 0/0 would be a NaN that ``argmax`` picks) or an invalid
   distribution restores the generator and calls ``torch.multinomial`` itself, which raises what it raises.

The processors before top-k (penalties, bans, temperature, ...) and the mask-only warpers after top-p run as
HF's own objects. Any processor this module does not know (a user's own class, a subclass, a list other than
`LogitsProcessorList`) sends the whole step to the plain HF path. Steps off the CPU, or too small for the
shortcut to pay (fewer than 8192 scores), run HF's processors one by one and ``torch.multinomial``: the same code
as the plain path minus `LogitsProcessorList`'s signature inspection. Both premises of step 2 are checked against
torch once per process before the draw is ever emulated.

Set the environment variable ``LIGHTNING_GEN_FAST_PATH=0`` (read at import) or ``fastpath.ENABLED = False`` to use
the plain path everywhere; ``fastpath.stats`` counts which route each step took.

Example::

    >>> from transformers.generation import logits_process as lp
    >>> chain = lp.LogitsProcessorList([lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(5),
    ...                                 lp.TopPLogitsWarper(0.9)])
    >>> scores = torch.randn(2, 5000, generator=torch.Generator().manual_seed(0))
    >>> ids = torch.zeros(2, 1, dtype=torch.long)
    >>> fast = sample(chain, ids, scores, generator=torch.Generator().manual_seed(1))
    >>> probs = torch.softmax(chain(ids, scores), dim=-1)
    >>> plain = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(1)).squeeze(1)
    >>> torch.equal(fast, plain)
    True
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from transformers.generation import logits_process as lp

__all__ = ["ENABLED", "FastPathStats", "plain_sample", "process", "sample", "stats"]

#: Use the fast path; ``LIGHTNING_GEN_FAST_PATH=0`` turns it off for the whole process.
ENABLED: bool = os.environ.get("LIGHTNING_GEN_FAST_PATH", "1").strip().lower() not in ("0", "false", "no", "off")

# HF processors called unchanged before top-k: pure functions of (input_ids, scores) with a 2-argument __call__.
_AS_IS = frozenset({
    lp.SequenceBiasLogitsProcessor, lp.EncoderRepetitionPenaltyLogitsProcessor, lp.RepetitionPenaltyLogitsProcessor,
    lp.NoRepeatNGramLogitsProcessor, lp.EncoderNoRepeatNGramLogitsProcessor, lp.NoBadWordsLogitsProcessor,
    lp.MinLengthLogitsProcessor, lp.MinNewTokensLengthLogitsProcessor, lp.ForcedBOSTokenLogitsProcessor,
    lp.ForcedEOSTokenLogitsProcessor, lp.InfNanRemoveLogitsProcessor, lp.ExponentialDecayLengthPenalty,
    lp.SuppressTokensLogitsProcessor, lp.SuppressTokensAtBeginLogitsProcessor, lp.TemperatureLogitsWarper,
    lp.TopHLogitsWarper, lp.TopKLogitsWarper, lp.TopPLogitsWarper, lp.MinPLogitsWarper, lp.TypicalLogitsWarper,
    lp.EpsilonLogitsWarper, lp.EtaLogitsWarper, lp.LogitNormalization,
})
# Warpers that may follow top-k and keep the draw on its candidates: they only set entries to -inf
# (`LogitNormalization` maps -inf to -inf), so every token they leave finite is a top-k candidate.
_MASK_ONLY = frozenset({
    lp.TopPLogitsWarper, lp.MinPLogitsWarper, lp.TypicalLogitsWarper, lp.EpsilonLogitsWarper, lp.EtaLogitsWarper,
    lp.LogitNormalization,
})
_NEG_INF = float("-inf")
# Relative distance from a float32 rounding boundary under which a float64 exponential is recomputed exactly;
# 2**-48 is at least 16 ulp of float64, far above the 2 ulp that two faithful log1p's can differ by.
_WINDOW = 2.0 ** -48
# Beyond this many such values in one step, restore the generator and let torch.multinomial draw.
_MAX_REPLAYS = 8
# Below this many scores (batch x vocabulary) the shortcut's fixed cost (~50 small ops) exceeds what it saves.
_MIN_NUMEL = 8192


@dataclass
class FastPathStats:
    """How many sampling steps took each route (process-wide, for tests and benchmarks).

    Attributes:
        fast: Steps decided by the fast path (possibly with a few exponentials replayed).
        direct: Steps off the CPU, or too small for the shortcut to pay: HF's processors called one by one (as
            `LogitsProcessorList` calls them, without its per-call signature inspection), then ``torch.multinomial``.
        plain: Steps sent whole to HF's processor list and ``torch.multinomial``: fast path off, or a processor it
            does not know.
        top_k_fallback: Steps whose top-k/top-p ran as HF's own warpers (a tie at a cut, NaN or inf, top_k >= V).
        draw_fallback: Steps whose draw was ``torch.multinomial`` itself (invalid distribution, zero uniform, ...).
        replays: Exponentials recomputed by torch's own kernel because of float32 rounding.
    """

    fast: int = 0
    direct: int = 0
    plain: int = 0
    top_k_fallback: int = 0
    draw_fallback: int = 0
    replays: int = 0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)


stats = FastPathStats()


@dataclass(frozen=True)
class _Plan:
    """A processor chain split around its top-k: ``prefix`` → ``top_k`` (→ ``top_p``) → ``suffix``."""

    chain: tuple[Any, ...]
    prefix: tuple[Any, ...]
    top_k: lp.TopKLogitsWarper | None
    top_p: lp.TopPLogitsWarper | None
    suffix: tuple[Any, ...]


def _plan(processors: Any) -> _Plan | None:
    """Split a chain the fast path covers, or None when any member is not a transformers class it knows."""
    # `LogitsProcessorList` itself (a subclass may call its members differently), of known members only.
    if type(processors) is not lp.LogitsProcessorList or any(type(p) not in _AS_IS for p in processors):
        return None
    chain = tuple(processors)
    for i in range(len(chain) - 1, -1, -1):
        proc = chain[i]
        if type(proc) is lp.TopKLogitsWarper:
            tail = chain[i + 1:]
            usable = proc.filter_value == _NEG_INF and all(
                type(p) in _MASK_ONLY and getattr(p, "filter_value", _NEG_INF) == _NEG_INF for p in tail
            )
            if not usable:
                break
            top_p = tail[0] if tail and type(tail[0]) is lp.TopPLogitsWarper else None
            return _Plan(chain, chain[:i], proc, top_p, tail[1:] if top_p is not None else tail)
        if type(proc) not in _MASK_ONLY:
            break
    return _Plan(chain, chain, None, None, ())


def _run(chain: Sequence[Any], input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Known processors one after the other: what `LogitsProcessorList` does for two-argument processors."""
    for proc in chain:
        scores = proc(input_ids, scores)
    return scores


def process(processors: Any, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``processors(input_ids, scores)``, skipping `LogitsProcessorList`'s per-call signature inspection when every
    processor is a transformers class known to take ``(input_ids, scores)`` (and the fast path is on)."""
    plan = _plan(processors) if ENABLED else None
    return processors(input_ids, scores) if plan is None else _run(plan.chain, input_ids, scores)


def plain_sample(processors: Any, input_ids: torch.Tensor, scores: torch.Tensor,
                 generator: torch.Generator | None) -> torch.Tensor:
    """HF's sampling step verbatim: the processor chain, softmax, one multinomial draw per row. `(B,)`"""
    probs = torch.softmax(processors(input_ids, scores), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def sample(processors: Any, input_ids: torch.Tensor, scores: torch.Tensor, *,
           generator: torch.Generator | None) -> torch.Tensor:
    """The token `plain_sample` would draw for each row, and the same generator state afterwards. `(B,)`

    Args:
        processors: The logits processor chain (a `LogitsProcessorList`).
        input_ids: The sequences so far, `(B, T)`.
        scores: Next-token scores, `(B, V)`.
        generator: The random generator, or None for torch's default one.
    """
    plan = _plan(processors) if ENABLED else None
    if plan is None or scores.dim() != 2:
        stats.plain += 1
        return plain_sample(processors, input_ids, scores, generator)
    on_cpu = scores.device.type == "cpu" and (generator is None or generator.device.type == "cpu")
    if not on_cpu or scores.numel() < _MIN_NUMEL:
        stats.direct += 1
        probs = torch.softmax(_run(plan.chain, input_ids, scores), dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
    scores = _run(plan.prefix, input_ids, scores)
    candidates = None
    if plan.top_k is not None:
        scores, candidates = _top_k_top_p(plan, input_ids, scores)
    probs = torch.softmax(_run(plan.suffix, input_ids, scores), dim=-1)  # (B, V), HF's exact probabilities
    stats.fast += 1
    return _draw(probs, candidates, generator)


def _top_k_top_p(
    plan: _Plan, input_ids: torch.Tensor, scores: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """HF's top-k (and top-p) output `(B, V)`, plus the top-k candidates' indices `(B, k)` (None after a fallback)."""
    batch, vocab = scores.shape
    k = min(plan.top_k.top_k, vocab)
    if k < vocab:
        vals, idx = scores.topk(k + 1, dim=-1)  # (B, k + 1), descending
        # HF keeps every score >= the k-th: exact only when the (k+1)-th is strictly smaller, the largest is finite,
        # and no NaN hides anywhere (a row sum is NaN with a NaN in the row, whichever end topk sorts NaN to).
        ok = (vals[:, k - 1] > vals[:, k]) & vals[:, 0].isfinite() & ~scores.sum(dim=-1).isnan()
        vals, idx = vals[:, :k], idx[:, :k]
        kept = vals
        if plan.top_p is not None:
            ascending = vals.flip(-1)  # (B, k)
            # The very tensor torch.sort gives HF's top-p: the V - k masked entries first, then the candidates.
            layout = scores.new_full((batch, vocab), _NEG_INF)
            layout[:, vocab - k:] = ascending
            cumulative = layout.softmax(dim=-1).cumsum(dim=-1)[:, vocab - k:]  # (B, k), ascending order
            # HF's comparison, on the candidates only: the masked entries stay -inf whatever it says about them.
            remove = cumulative <= (1 - plan.top_p.top_p)
            remove[..., -plan.top_p.min_tokens_to_keep:] = 0
            # Equal values on both sides of the cut: which of them survives is torch.sort's choice, not ours.
            split_tie = (remove[:, 1:] != remove[:, :-1]) & (ascending[:, 1:] == ascending[:, :-1])
            ok &= ~split_tie.any(dim=-1)
            kept = vals.masked_fill(remove.flip(-1), _NEG_INF)
        if bool(ok.all()):
            return scores.new_full((batch, vocab), _NEG_INF).scatter_(1, idx, kept), idx
    stats.top_k_fallback += 1
    scores = plan.top_k(input_ids, scores)
    if plan.top_p is not None:
        scores = plan.top_p(input_ids, scores)
    return scores, None


def _draw(probs: torch.Tensor, candidates: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    """``torch.multinomial(probs, 1, generator).squeeze(1)``, with exponentials only where a token can win.

    ``candidates`` `(B, k)` holds every index whose probability may be nonzero, or None for all of them.
    """
    if probs.dtype != torch.float32 or not probs.is_contiguous() or not _draw_is_emulated():
        stats.draw_fallback += 1
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
    gen = generator if generator is not None else torch.default_generator
    state = gen.get_state()
    uniform = torch.empty(probs.shape, dtype=torch.float64).uniform_(generator=gen)  # (B, V): exponential_'s draws
    if candidates is None:
        p, u = probs, uniform
        # torch.multinomial's own checks, so that an invalid distribution reaches it and raises its error.
        invalid = ~((probs.max() < math.inf) & (probs.min() >= 0)) | (probs.sum(dim=-1) == 0).any()
    else:
        p, u = probs.gather(1, candidates), uniform.gather(1, candidates)  # (B, k)
        # Outside the candidates p == 0; a candidate row is valid iff its mass is positive and finite.
        invalid = ~(p.sum(dim=-1).isfinite() & (p.amax(dim=-1) > 0) & (p.amin(dim=-1) >= 0)).all()
    exact = torch.log1p(u.neg()).neg_()  # (B, ·) float64
    q = exact.float()
    # Where another faithful log1p could round to a different float32; only tokens with p > 0 can win.
    unsure = (p > 0) & (((exact * (1 + _WINDOW)).float() != q) | ((exact * (1 - _WINDOW)).float() != q))
    # u == 0 gives q == 0 and, where p == 0, a NaN that argmax would pick.
    flags = torch.stack([invalid.long(), (uniform.amin() == 0).long(), unsure.sum()]).tolist()
    if flags[0] or flags[1] or flags[2] > _MAX_REPLAYS:
        gen.set_state(state)
        stats.draw_fallback += 1
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
    if flags[2]:
        _replay(q, unsure, candidates, probs.shape[1], state)
    ratio = p / q
    if candidates is None:
        return ratio.argmax(dim=-1)
    best = ratio.amax(dim=-1, keepdim=True)
    # argmax's rule: the first (lowest) index among equal maxima.
    return torch.where(ratio == best, candidates, probs.shape[1]).amin(dim=-1)


def _replay(q: torch.Tensor, unsure: torch.Tensor, candidates: torch.Tensor | None, vocab: int,
            state: torch.Tensor) -> None:
    """Overwrite ``q`` where ``unsure`` with torch's own ``exponential_`` at that element's place in the stream."""
    rows, cols = unsure.nonzero(as_tuple=True)
    flat = rows * vocab + (cols if candidates is None else candidates[rows, cols])
    replay = torch.Generator()
    replay.set_state(state)
    done = 0
    for position, row, col in sorted(zip(flat.tolist(), rows.tolist(), cols.tolist())):
        if position > done:
            torch.empty(position - done, dtype=torch.float64).uniform_(generator=replay)  # skip ahead
        q[row, col] = torch.empty(1).exponential_(1, generator=replay)[0]
        done = position + 1
        stats.replays += 1


@functools.cache
def _draw_is_emulated() -> bool:
    """Whether this torch draws as `_draw` assumes: checked once against its own kernels.

    ``exponential_`` on float32 must equal ``float32(-log1p(-u))`` for float64 ``uniform_`` draws and leave the
    same generator state, and ``multinomial(p, 1)`` must equal ``argmax(p / exponential_)``.
    """
    data = torch.Generator().manual_seed(20240611)
    probs = torch.rand(4, 3001, generator=data) ** 3
    probs[:, ::5] = 0
    probs = probs / probs.sum(dim=-1, keepdim=True)
    for seed in range(3):
        a, b, c = (torch.Generator().manual_seed(seed) for _ in range(3))
        drawn = torch.multinomial(probs, 1, generator=a).squeeze(1)
        exponential = torch.empty_like(probs).exponential_(1, generator=b)
        uniform = torch.empty(probs.shape, dtype=torch.float64).uniform_(generator=c)
        if not (torch.equal(exponential, torch.log1p(uniform.neg()).neg().float())
                and torch.equal(drawn, (probs / exponential).argmax(dim=-1))
                and torch.equal(a.get_state(), b.get_state()) and torch.equal(b.get_state(), c.get_state())):
            return False
    return True
