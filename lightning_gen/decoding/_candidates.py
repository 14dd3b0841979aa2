"""After top-k, HF's top-p, min-p and draw decided on the ``k`` candidates alone.

Once ``TopKLogitsWarper`` has run, only its ``k`` candidates are finite, yet HF's top-p sorts and softmaxes the
whole `(B, V)` row, min-p softmaxes it again, and the draw a third time. Each of them only *decides* something
about the candidates, from float32 values that are, up to a few roundings, functions of ``e = exp(v - max)`` of
the candidates' values ``v``:

* top-p removes the candidates whose cumulative probability in ascending order is ``<= 1 - top_p``: HF's float32
  cumulative is ``cumsum(e) / sum(e)`` within ``(k + 8)`` roundings (its softmax sums ``k`` non-zero terms);
* min-p removes those whose probability is below ``min_p`` times the largest one: ``e < min_p`` within a few
  roundings (the common ``1 / sum(e)`` cancels, and the largest candidate's ``e`` is ``exp(0) = 1``);
* the draw is the candidate with the largest ``p / q`` (``q`` the exponential of its uniform, exact in float32,
  see `lightning_gen.decoding._draws`): the largest ``e / q`` within a few roundings.

`sample` computes ``e`` and the sums in float64 and takes each decision only where it is clear of the rounding
bound (the cut of top-p and min-p, the winner of the draw by a factor ``1 + 2**-18`` over the runner-up, each
widened by ``|v - max|`` roundings in case a kernel rounds exp's argument its own way); for
anything closer, an equal value on both sides of a cut, or a chain it does not cover, it returns None (with the
generator untouched) and the caller takes `top_k_top_p` and the full-width route, whose bytes are HF's.

Without top-k, `after_nucleus` does the same for the draw after a chain's last top-p, min-p or typical-p warper:
`lightning_gen.decoding._nucleus` gives the tokens it keeps (HF's own decision, bit for bit), and the draw is the
largest ``e / q`` among those, under the same margin; the warper's output is built only when that is too close.

Example::

    >>> from transformers.generation import logits_process as lp
    >>> from lightning_gen.decoding._fastpath import FastPathStats, plain_sample
    >>> chain = lp.LogitsProcessorList([lp.TopKLogitsWarper(50), lp.TopPLogitsWarper(0.9)])
    >>> scores = torch.randn(4, 10000, generator=torch.Generator().manual_seed(0)) * 3
    >>> ids = torch.zeros(4, 1, dtype=torch.long)
    >>> ours = sample(chain[0], chain[1], (), scores, torch.Generator().manual_seed(1), FastPathStats())
    >>> torch.equal(ours, plain_sample(chain, ids, scores, torch.Generator().manual_seed(1)))
    True
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.generation import logits_process as lp

from lightning_gen.decoding import _draws as draws
from lightning_gen.decoding import _nucleus as nucleus

__all__ = ["after_nucleus", "covers", "sample", "top_k_top_p"]

_NEG_INF = float("-inf")
# The draw's winner must beat every other candidate's e / q by this factor: float32 p / q is within ~2**-21 of
# the exact ratio times the row's common 1 / sum(e) (exp, softmax and the division round a few times each).
_MARGIN = 1 + 2.0 ** -18
# A min-p decision must clear `min_p` by this much, relative: a handful of float32 roundings on either side.
_MIN_P_SLACK = 2.0 ** -20


def covers(top_p: lp.TopPLogitsWarper | None, suffix: tuple[Any, ...]) -> bool:
    """Whether `sample` can decide a chain that ends with top-k, ``top_p`` (or None) and ``suffix``."""
    return all(type(p) is lp.MinPLogitsWarper and p.min_tokens_to_keep == 1 for p in suffix)


def sample(top_k: lp.TopKLogitsWarper, top_p: lp.TopPLogitsWarper | None, suffix: tuple[Any, ...],
           scores: torch.Tensor, generator: torch.Generator | None, stats: Any,
           scratch: draws.Scratch | None = None) -> torch.Tensor | None:
    """The token HF's top-k, ``top_p``, ``suffix`` (min-p warpers) and multinomial draw choose for each row `(B,)`,
    with the generator advanced as multinomial advances it; None (generator untouched) where it cannot promise that.

    Args:
        top_k: HF's top-k warper (``filter_value`` -inf).
        top_p: The top-p warper right after it, or None.
        suffix: The warpers after those, for which `covers` holds.
        scores: float32 `(B, V)` on the CPU, the scores top-k receives.
        generator: The random generator, or None for torch's default one.
        stats: Counts ``replays``.
        scratch: Storage for the uniforms' integers.
    """
    batch, vocab = scores.shape
    k = min(top_k.top_k, vocab)
    if k >= vocab or scores.dtype != torch.float32 or not draws.emulated():
        return None
    vals, idx = scores.topk(k + 1, dim=-1)  # (B, k + 1), descending
    # HF keeps every score >= the k-th: exact only when the (k+1)-th is strictly smaller, the largest is finite and
    # no NaN hides anywhere (a row sum is NaN with a NaN in the row, whichever end topk sorts NaN to).
    ok = (vals[:, k - 1] > vals[:, k]) & vals[:, 0].isfinite() & ~scores.sum(dim=-1).isnan()
    if not bool(ok.all()):
        return None
    vals, idx = vals[:, :k], idx[:, :k]  # (B, k) descending
    # The softmax's own first step, in float32 as it rounds it: every candidate less the row's largest.
    z = vals - vals[:, :1]  # (B, k) <= 0
    e = z.double().exp()  # (B, k), e[:, 0] == 1
    spread = _spread(z)  # every bound below widens by that much
    keep = torch.ones_like(vals, dtype=torch.bool)
    if top_p is not None:
        ascending, e_up = vals.flip(-1), e.flip(-1)
        cumulative = e_up.cumsum(dim=-1) / e_up.sum(dim=-1, keepdim=True)  # (B, k) ascending, as HF's layout
        limit = 1 - top_p.top_p
        remove = cumulative <= limit
        remove[..., -top_p.min_tokens_to_keep:] = False
        close = (cumulative - limit).abs() <= cumulative * ((k + 16) * 2.0 ** -24 + spread) + 2.0 ** -24
        close[..., -top_p.min_tokens_to_keep:] = False
        # Equal values on both sides of the cut: which of them survives is torch.sort's choice, not ours.
        split_tie = (remove[:, 1:] != remove[:, :-1]) & (ascending[:, 1:] == ascending[:, :-1])
        if bool(close.any() | split_tie.any()):
            return None
        keep = ~remove.flip(-1)
    for warper in suffix:  # min-p: probability below min_p times the largest one's (which has e == 1)
        if bool(((e - warper.min_p).abs() <= (_MIN_P_SLACK + spread) * e.clamp(min=warper.min_p))[keep].any()):
            return None
        keep &= e >= warper.min_p
    return _draw(torch.where(keep, e, 0.0), idx, scores.shape, generator, stats, _MARGIN + 2 * spread, scratch)


def after_nucleus(warper: Any, input_ids: torch.Tensor, scores: torch.Tensor, generator: torch.Generator | None,
                  stats: Any, scratch: draws.Scratch | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """HF's ``warper`` (top-p, min-p or typical-p, ``filter_value`` -inf), the chain's last, then its draw.

    Returns the tokens `(B,)` where the draw is decided on the tokens the warper keeps (`lightning_gen.decoding.
    _nucleus.kept`), with the generator advanced as multinomial advances it; otherwise None (generator untouched)
    and the warper's output `(B, V)`, for the caller's full-width draw. Counts ``nucleus_fallback`` (HF's own
    warper ran) in ``stats``; ``scratch`` holds the uniforms' integers.
    """
    cut_of = nucleus.CUTS[type(warper)]
    cut = cut_of(warper, scores) if draws.emulated() else None
    if cut is None:
        out, fell_back = nucleus.warp(warper, input_ids, scores)
        stats.nucleus_fallback += fell_back
        return None, out
    kept = nucleus.kept(cut)
    if kept is not None:
        indices, real = kept
        vals = scores.gather(1, indices).masked_fill_(~real, _NEG_INF)  # (B, n): the masked row's finite entries
        top = vals.amax(dim=-1, keepdim=True)
        if bool(top.isfinite().all()):  # else softmax's row is NaN and multinomial raises: the full route does
            z = vals - top  # (B, n) <= 0, as softmax rounds it; -inf where padded
            spread = _spread(z.masked_fill(~real, 0.0))
            tokens = _draw(z.double().exp(), indices, scores.shape, generator, stats, _MARGIN + 2 * spread, scratch)
            if tokens is not None:
                return tokens, scores
    return None, nucleus.apply(cut, scores, warper.filter_value)


def _spread(z: torch.Tensor) -> torch.Tensor:
    """How far ``exp(z)`` may move, relatively, should a kernel round exp's argument differently (a fused multiply by
    log2(e) ...): ``|z|`` roundings at the row's smallest ``z`` `(B, n)` <= 0. `(B, 1)` float64"""
    return z.amin(dim=-1, keepdim=True).double().abs() * 2.0 ** -22


def _draw(weights: torch.Tensor, candidates: torch.Tensor, shape: torch.Size, generator: torch.Generator | None,
          stats: Any, margin: torch.Tensor, scratch: draws.Scratch | None) -> torch.Tensor | None:
    """The candidate with the largest ``weights / q`` `(B,)`, where HF's float32 ratios agree on it."""
    gen = generator if generator is not None else torch.default_generator
    state = gen.get_state()
    bits = draws.uniform_bits(shape, gen, scratch)  # (B, V): exponential_'s uniforms, u = bits * 2**-53
    u = draws.to_uniform(bits.gather(1, candidates))  # (B, k)
    exact = torch.log1p(u.neg()).neg_()
    q = exact.float()
    live = weights > 0
    unsure = live & (((exact * (1 + draws.WINDOW)).float() != q) | ((exact * (1 - draws.WINDOW)).float() != q))
    replays = int(unsure.sum())
    # u == 0 anywhere gives q == 0 and a NaN ratio that multinomial's argmax would pick.
    if replays > draws.MAX_REPLAYS or draws.any_zero(bits):
        gen.set_state(state)
        return None
    if replays:
        stats.replays += draws.replay(q, unsure, candidates, shape[1], state)
    ratio = weights / q.double()  # (B, k); removed candidates 0
    best, at = ratio.max(dim=-1, keepdim=True)
    runner_up = ratio.scatter(1, at, 0.0).amax(dim=-1, keepdim=True)
    if not bool((best > runner_up * margin).all()):
        gen.set_state(state)
        return None
    return candidates.gather(1, at).squeeze(1)


def top_k_top_p(top_k: lp.TopKLogitsWarper, top_p: lp.TopPLogitsWarper | None, input_ids: torch.Tensor,
                scores: torch.Tensor, stats: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """HF's top-k (and top-p) output `(B, V)`, plus the top-k candidates' indices `(B, k)` (None after a fallback:
    HF's own warpers ran, counted in ``stats.top_k_fallback``)."""
    batch, vocab = scores.shape
    k = min(top_k.top_k, vocab)
    if k < vocab:
        vals, idx = scores.topk(k + 1, dim=-1)  # (B, k + 1), descending
        # HF keeps every score >= the k-th: exact only when the (k+1)-th is strictly smaller, the largest is finite,
        # and no NaN hides anywhere (a row sum is NaN with a NaN in the row, whichever end topk sorts NaN to).
        ok = (vals[:, k - 1] > vals[:, k]) & vals[:, 0].isfinite() & ~scores.sum(dim=-1).isnan()
        vals, idx = vals[:, :k], idx[:, :k]
        kept = vals
        if top_p is not None:
            ascending = vals.flip(-1)  # (B, k)
            # The very tensor torch.sort gives HF's top-p: the V - k masked entries first, then the candidates.
            layout = scores.new_full((batch, vocab), _NEG_INF)
            layout[:, vocab - k:] = ascending
            cumulative = layout.softmax(dim=-1).cumsum(dim=-1)[:, vocab - k:]  # (B, k), ascending order
            # HF's comparison, on the candidates only: the masked entries stay -inf whatever it says about them.
            remove = cumulative <= (1 - top_p.top_p)
            remove[..., -top_p.min_tokens_to_keep:] = 0
            # Equal values on both sides of the cut: which of them survives is torch.sort's choice, not ours.
            split_tie = (remove[:, 1:] != remove[:, :-1]) & (ascending[:, 1:] == ascending[:, :-1])
            ok &= ~split_tie.any(dim=-1)
            kept = vals.masked_fill(remove.flip(-1), _NEG_INF)
        if bool(ok.all()):
            return scores.new_full((batch, vocab), _NEG_INF).scatter_(1, idx, kept), idx
    stats.top_k_fallback += 1
    scores = top_k(input_ids, scores)
    if top_p is not None:
        scores = top_p(input_ids, scores)
    return scores, None

