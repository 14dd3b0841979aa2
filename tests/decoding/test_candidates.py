"""`lightning_gen.decoding._candidates`: top-k, top-p, min-p and the draw decided on the candidates alone give HF's
tokens and generator state, or hand the step back untouched.

Fuzzed against transformers' processors and `torch.multinomial` (`plain_sample`) on chains with and without top-p
and min-p, candidates with ties, masked entries and rows of every shape; the route counters show that the
candidates decide most steps and that the close calls really go back to the full-width route.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation import logits_process as lp

from lightning_gen.decoding import _candidates as candidates_
from lightning_gen.decoding import _fastpath as fastpath


@pytest.fixture(autouse=True)
def _fast_route(monkeypatch):
    monkeypatch.setattr(fastpath, "ENABLED", True)
    monkeypatch.setattr(fastpath, "_MIN_NUMEL", 0)
    fastpath.stats.reset()


def _case(seed: int):
    g = torch.Generator().manual_seed(seed)
    batch, vocab = int(torch.randint(1, 7, (1,), generator=g)), int(torch.randint(100, 3000, (1,), generator=g))
    scores = torch.randn(batch, vocab, generator=g) * [0.5, 2.0, 6.0][seed % 3]
    if seed % 4 == 1:
        scores = (scores * 8).round() / 8  # ties among the candidates, some at the top-k cut
    elif seed % 4 == 2:
        scores[torch.rand(batch, vocab, generator=g) < 0.5] = -math.inf
    chain = [lp.TopKLogitsWarper(int(torch.randint(1, 80, (1,), generator=g)))]
    if seed % 3 != 0:
        chain.append(lp.TopPLogitsWarper(float(torch.rand(1, generator=g)) * 0.98 + 0.01,
                                         min_tokens_to_keep=1 + seed % 5 // 4))
    if seed % 2 == 0:
        chain.append(lp.MinPLogitsWarper(float(torch.rand(1, generator=g)) * 0.5))
    return lp.LogitsProcessorList(chain), scores


def _same_as_hf(chain, scores, seed):
    ids = torch.zeros(scores.shape[0], 1, dtype=torch.long)
    ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    got = fastpath.Sampler(chain).sample(ids, scores, generator=ours)
    assert torch.equal(got, fastpath.plain_sample(chain, ids, scores, theirs)), seed
    assert torch.equal(ours.get_state(), theirs.get_state()), seed


def test_candidates_decide_hf_s_tokens():
    for seed in range(200):
        chain, scores = _case(seed)
        _same_as_hf(chain, scores, seed)
    assert fastpath.stats.on_candidates > 120, "design: the candidates decide most steps"
    assert fastpath.stats.top_k_fallback > 0, "design: ties at a cut go back to HF's warpers"


def test_a_cut_within_the_rounding_bound_goes_back():
    # Two candidates of equal probability and top-p 0.5: HF's cumulative at the first is 0.5 up to roundings.
    scores = torch.full((1, 500), -5.0)
    scores[0, 10] = scores[0, 20] = 1.0
    chain = lp.LogitsProcessorList([lp.TopKLogitsWarper(2), lp.TopPLogitsWarper(0.5)])
    assert candidates_.sample(chain[0], chain[1], (), scores, torch.Generator().manual_seed(0),
                              fastpath.stats) is None
    _same_as_hf(chain, scores, 0)


def test_min_p_with_more_tokens_to_keep_is_not_covered():
    assert candidates_.covers(None, (lp.MinPLogitsWarper(0.1),))
    assert not candidates_.covers(None, (lp.MinPLogitsWarper(0.1, min_tokens_to_keep=2),))
    assert not candidates_.covers(None, (lp.TypicalLogitsWarper(0.9),))


def _nucleus_case(seed: int):
    """A chain without top-k that ends in top-p, min-p or typical-p, and scores for it (ties, -inf, signed zeros,
    batches of 1 to 32, vocabularies up to GPT-2's)."""
    g = torch.Generator().manual_seed(500 + seed)
    batch = [1, 3, 8, 32][seed % 4]
    vocab = [300, 2000, 50257][seed % 3] if batch < 32 else 3000
    scores = torch.randn(batch, vocab, generator=g) * [0.3, 2.0, 6.0, 12.0][seed % 4]
    kind = seed % 5
    if kind == 1:
        scores = (scores * 4).round() / 4  # equal scores among what is kept, and at the cut
    elif kind == 2:
        scores[torch.rand(batch, vocab, generator=g) < 0.6] = -math.inf
    elif kind == 3:
        scores[torch.rand(batch, vocab, generator=g) < 0.2] = 0.0
        scores[torch.rand(batch, vocab, generator=g) < 0.2] = -0.0
    p = float(torch.rand(1, generator=g)) * 0.9 + 0.05
    last = [lp.TopPLogitsWarper(p), lp.MinPLogitsWarper(p * 0.3), lp.TypicalLogitsWarper(p),
            lp.TopPLogitsWarper(p, min_tokens_to_keep=3)][seed % 4]
    chain = [lp.TemperatureLogitsWarper(0.7)] if seed % 3 == 0 else []
    if seed % 7 == 0:
        chain.append(lp.TopPLogitsWarper(0.95))  # a warper before the last one, as the generation config orders them
    return lp.LogitsProcessorList([*chain, last]), scores


def test_a_last_nucleus_warper_s_draw_is_decided_on_what_it_keeps():
    for seed in range(60):
        chain, scores = _nucleus_case(seed)
        _same_as_hf(chain, scores, seed)
    assert fastpath.stats.fast == 60
    assert fastpath.stats.on_candidates > 40, "design: most draws are decided on the kept tokens"


@pytest.mark.parametrize("case", ["top-k", "nucleus last"])
def test_close_calls_go_back_untouched(monkeypatch, case):
    # A margin nothing clears: every draw is handed back, after the generator was restored.
    monkeypatch.setattr(candidates_, "_MARGIN", math.inf)
    make = {"top-k": _case, "nucleus last": _nucleus_case}[case]
    for seed in range(24):
        chain, scores = make(seed)
        _same_as_hf(chain, scores, seed)
    assert fastpath.stats.on_candidates == 0 and fastpath.stats.fast == 24


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_scores_before_a_nucleus_warper_take_hf_s_warper(bad):
    scores = torch.randn(4, 3000, generator=torch.Generator().manual_seed(1)) * 3
    scores[2, 5] = bad
    for warper in (lp.TopPLogitsWarper(0.9), lp.MinPLogitsWarper(0.1), lp.TypicalLogitsWarper(0.9)):
        ids = torch.zeros(4, 1, dtype=torch.long)
        chain = lp.LogitsProcessorList([warper])
        with pytest.raises(RuntimeError) as theirs:
            fastpath.plain_sample(chain, ids, scores, torch.Generator().manual_seed(0))
        with pytest.raises(RuntimeError) as ours:
            fastpath.Sampler(chain).sample(ids, scores, generator=torch.Generator().manual_seed(0))
        assert str(ours.value) == str(theirs.value)
    assert fastpath.stats.nucleus_fallback == 3 and fastpath.stats.on_candidates == 0


def test_the_draw_after_a_nucleus_warper_on_the_direct_route_still_runs_the_warper(monkeypatch):
    # The direct route (small steps) calls the whole chain, the last warper included.
    monkeypatch.setattr(fastpath, "_MIN_NUMEL", 10 ** 9)
    for seed in range(8):
        chain, scores = _nucleus_case(seed)
        _same_as_hf(chain, scores, seed)
    assert fastpath.stats.direct == 8
