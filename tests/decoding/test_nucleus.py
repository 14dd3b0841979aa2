"""`lightning_gen.decoding._nucleus`: HF's top-p, min-p and typical-p, bit for bit, or None.

Fuzzed against transformers' own warpers on scores built to be hard: few distinct values (ties everywhere), -inf
entries (as earlier processors leave them), ``-0.0`` next to ``0.0``, rows that are nearly uniform or very peaked,
and rows with NaN or +inf, for which the shortcut must decline. Every comparison is of the bytes.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation import logits_process as lp

from lightning_gen.decoding import _nucleus as nucleus

IDS = torch.zeros(1, 1, dtype=torch.long)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def _scores(seed: int) -> torch.Tensor:
    """One fuzz case: (B, V) float32 with the features named in the module docstring, chosen by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    batch = int(torch.randint(1, 5, (1,), generator=g))
    vocab = int(torch.randint(2, 3000, (1,), generator=g))
    kind = seed % 6
    scale = [0.05, 1.0, 4.0, 12.0][seed % 4]
    scores = torch.randn(batch, vocab, generator=g) * scale
    if kind == 1:  # few distinct values: ties across any cut
        scores = (scores * 2).round() / 2
    elif kind == 2:  # masked entries, as top-k or a ban leave them
        scores[torch.rand(batch, vocab, generator=g) < 0.7] = -math.inf
    elif kind == 3:  # signed zeros among the values
        scores[torch.rand(batch, vocab, generator=g) < 0.3] = 0.0
        scores[torch.rand(batch, vocab, generator=g) < 0.3] = -0.0
    elif kind == 4:  # a handful of exact duplicates of the largest values
        top = scores.topk(min(5, vocab), dim=-1).values
        scores[:, : top.shape[1]] = top
    return scores


def _warpers(seed: int):
    g = torch.Generator().manual_seed(10_000 + seed)
    p = float(torch.rand(1, generator=g))
    keep = 1 if seed % 5 else int(torch.randint(2, 6, (1,), generator=g))
    return [
        lp.TopPLogitsWarper(top_p=[p, 0.9, 1.0, 0.05][seed % 4], min_tokens_to_keep=keep),
        lp.MinPLogitsWarper(min_p=[p, 0.1, 1.0, 0.0][seed % 4], min_tokens_to_keep=keep),
        lp.TypicalLogitsWarper(mass=min(max(p, 0.01), 0.99), min_tokens_to_keep=keep),
    ]


@pytest.fixture(scope="module")
def fuzzed():
    """Per warper class: how many cases the shortcut decided and how many it declined; asserts every decision."""
    counts = {cls: [0, 0] for cls in nucleus.COVERED}
    for seed in range(300):
        scores = _scores(seed)
        for warper in _warpers(seed):
            expected = warper(IDS, scores)
            got = nucleus.COVERED[type(warper)](warper, scores)
            if got is None:
                counts[type(warper)][1] += 1
                continue
            counts[type(warper)][0] += 1
            assert got.dtype == expected.dtype and got.shape == expected.shape
            assert torch.equal(_bits(got), _bits(expected)), (seed, warper)
    return counts


@pytest.mark.parametrize("cls", list(nucleus.COVERED), ids=lambda c: c.__name__)
def test_the_shortcut_is_hfs_warper_bit_for_bit(fuzzed, cls):
    decided, declined = fuzzed[cls]
    assert decided > 200, "design: most cases are decided by the shortcut, not handed back"
    if cls is lp.TopPLogitsWarper:
        assert declined > 0, "design: some cases tie at the cut and must be handed back"


def test_typical_p_over_a_large_vocabulary():
    # Over 50257 tokens float32 keys |-log p - entropy| collide (equal keys, different logits) in most rows.
    scores = torch.randn(4, 50257, generator=torch.Generator().manual_seed(0)) * 3
    for warper in (lp.TypicalLogitsWarper(0.9), lp.TypicalLogitsWarper(0.5, min_tokens_to_keep=3)):
        got = nucleus.typical_p(warper, scores)
        assert got is not None and torch.equal(_bits(got), _bits(warper(IDS, scores)))


@pytest.mark.parametrize("cls", list(nucleus.COVERED), ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_scores_are_handed_back(cls, bad):
    scores = torch.randn(3, 500, generator=torch.Generator().manual_seed(0))
    scores[1, 17] = bad
    warper = {lp.TopPLogitsWarper: lp.TopPLogitsWarper(0.8), lp.MinPLogitsWarper: lp.MinPLogitsWarper(0.1),
              lp.TypicalLogitsWarper: lp.TypicalLogitsWarper(0.8)}[cls]
    assert nucleus.COVERED[cls](warper, scores) is None
    out, fell_back = nucleus.warp(warper, IDS, scores)
    assert fell_back and torch.equal(_bits(out), _bits(warper(IDS, scores)))


def test_a_row_all_masked_is_handed_back():
    scores = torch.randn(2, 300, generator=torch.Generator().manual_seed(0))
    scores[0] = -math.inf
    assert nucleus.top_p(lp.TopPLogitsWarper(0.9), scores) is None
    assert nucleus.typical_p(lp.TypicalLogitsWarper(0.9), scores) is None


def test_a_tie_across_the_top_p_cut_is_handed_back():
    # Uniform scores: every value ties, and HF's cut falls inside them.
    scores = torch.zeros(1, 1000)
    assert nucleus.top_p(lp.TopPLogitsWarper(0.5), scores) is None
    out, fell_back = nucleus.warp(lp.TopPLogitsWarper(0.5), IDS, scores)
    assert fell_back and torch.equal(out, lp.TopPLogitsWarper(0.5)(IDS, scores))


def test_a_non_contiguous_slice_and_other_dtypes():
    wide = torch.randn(2, 1200, generator=torch.Generator().manual_seed(3))
    scores = wide[:, :1000]  # what the loop passes when the model's vocabulary is padded
    for warper in _warpers(1):
        got = nucleus.COVERED[type(warper)](warper, scores)
        assert got is not None and torch.equal(_bits(got), _bits(warper(IDS, scores)))
    assert nucleus.top_p(lp.TopPLogitsWarper(0.9), scores.double()) is None  # float32 only


def test_other_processors_pass_through_warp():
    temperature = lp.TemperatureLogitsWarper(0.7)
    scores = torch.randn(2, 50, generator=torch.Generator().manual_seed(0))
    out, fell_back = nucleus.warp(temperature, IDS, scores)
    assert not fell_back and torch.equal(out, temperature(IDS, scores))


class _CountingTypical(lp.TypicalLogitsWarper):
    """HF's typical-p warper, counting the rows it is handed (the rows `typical_p` could not decide)."""

    rows = 0

    def __call__(self, input_ids, scores):
        _CountingTypical.rows += scores.shape[0]
        return super().__call__(input_ids, scores)


@pytest.mark.parametrize("mass", [0.2, 0.9, 0.995])
@pytest.mark.parametrize("kind", ["peaked", "flat", "ties", "masked"])
def test_typical_p_decides_by_the_cut_s_group_and_hands_the_close_rows_to_hf(mass, kind):
    # Rows of a large vocabulary: most are decided by the span of keys around the entropy, rows whose cut falls
    # within the rounding bound of `mass` are HF's own; the batch comes back as HF's bytes either way.
    g = torch.Generator().manual_seed(int(mass * 1000) + len(kind))
    scores = torch.randn(6, 50257, generator=g) * {"peaked": 6.0, "flat": 0.3, "ties": 2.0, "masked": 4.0}[kind]
    if kind == "ties":
        scores = (scores * 4).round() / 4  # few distinct logits: groups of equal keys everywhere
    elif kind == "masked":
        scores[torch.rand(6, 50257, generator=g) < 0.8] = -math.inf
        scores[0, :7] = 0.0
        scores[0, 7:14] = -0.0
    warper = _CountingTypical(mass=mass)
    _CountingTypical.rows = 0
    got = nucleus.typical_p(warper, scores)
    handed = _CountingTypical.rows
    assert torch.equal(_bits(got), _bits(lp.TypicalLogitsWarper(mass=mass)(IDS, scores)))
    assert handed <= 6
    if kind == "flat" and mass == 0.995:
        assert handed > 0, "design: a flat row's cut lies within the rounding bound, and HF decides it"
    if kind in ("peaked", "ties") and mass == 0.2:
        assert handed == 0, "design: these rows are decided without HF's sort, groups of equal keys included"


@pytest.mark.parametrize("k", [1, 5, 50, 300])
def test_typical_p_after_top_k_searches_the_candidates_alone(k):
    # Top-k's output: -inf outside its candidates. The search runs on those k, with a bound of k roundings.
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        scores = torch.randn(5, [5000, 50257][seed % 2], generator=g) * [0.5, 3.0, 8.0][seed % 3]
        if seed % 4 == 3:
            scores = (scores * 2).round() / 2  # equal candidates, equal keys
        idx = scores.topk(k, dim=-1).indices
        masked = torch.full_like(scores, -math.inf).scatter_(1, idx, scores.gather(1, idx))
        warper = lp.TypicalLogitsWarper(mass=[0.2, 0.9, 0.99][seed % 3])
        got = nucleus.typical_p(warper, masked, idx)
        assert got is not None and torch.equal(_bits(got), _bits(warper(IDS, masked))), seed


def _cut_cases():
    for seed in range(120):
        scores = _scores(seed)
        for warper in _warpers(seed):
            cut = nucleus.CUTS[type(warper)](warper, scores)
            if cut is not None:
                yield seed, warper, scores, cut


def test_apply_of_a_cut_is_the_warper_s_output():
    decided = 0
    for seed, warper, scores, cut in _cut_cases():
        assert torch.equal(_bits(nucleus.apply(cut, scores, warper.filter_value)), _bits(warper(IDS, scores))), seed
        decided += 1
    assert decided > 150, "design: most cases have a cut"


def test_kept_lists_every_entry_the_warper_keeps_and_none_it_removes():
    for seed, warper, scores, cut in _cut_cases():
        expected = warper(IDS, scores)
        listed = nucleus.kept(cut)
        assert listed is not None, seed  # every warper keeps at least one entry per row
        indices, real = listed
        assert indices.shape == real.shape and indices.shape[0] == scores.shape[0]
        assert bool(real.any(dim=-1).all()) and bool((indices[~real] == 0).all())
        for row in range(scores.shape[0]):
            listed_row = indices[row][real[row]]
            assert bool((listed_row[1:] > listed_row[:-1]).all())  # ascending, no repeats
            survivors = (expected[row] > -math.inf).nonzero().squeeze(1)
            # Every finite output is listed; a listed entry is one the warper left as it was (a score of -inf may
            # be kept, it still draws nothing).
            assert bool(torch.isin(survivors, listed_row).all()), seed
            assert torch.equal(_bits(expected[row, listed_row]), _bits(scores[row, listed_row])), seed


def test_kept_covers_the_rows_hf_s_typical_warper_decided():
    # Flat rows at mass 0.995: the cut lies within the rounding bound, so HF's warper decides them (`own`).
    scores = torch.randn(6, 50257, generator=torch.Generator().manual_seed(4)) * 0.3
    warper = lp.TypicalLogitsWarper(mass=0.995)
    cut = nucleus.typical_p_cut(warper, scores)
    assert cut is not None and cut.own is not None
    indices, real = nucleus.kept(cut)
    expected = warper(IDS, scores)
    for row in range(6):
        assert torch.equal(indices[row][real[row]], (expected[row] > -math.inf).nonzero().squeeze(1))


@pytest.mark.parametrize("near", [1e-3, 0.5, 8.0, 1e4])
def test_typical_p_on_the_keys_near_the_entropy_or_all_of_them(near, monkeypatch):
    # Below a small bound the kept keys rarely hold the mass (the search then sorts every key), with a large one
    # they are most of the vocabulary (sorted whole at once); HF's bytes on every route.
    monkeypatch.setattr(nucleus, "_NEAR", near)
    seen = []
    original = nucleus._near_entropy
    monkeypatch.setattr(nucleus, "_near_entropy", lambda v, e: seen.append(original(v, e)) or seen[-1])
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        scores = torch.randn(4, [3000, 50257][seed % 2], generator=g) * [0.5, 3.0, 8.0, 20.0][seed % 4]
        if seed % 3 == 2:
            scores = (scores * 2).round() / 2
        warper = lp.TypicalLogitsWarper(mass=[0.2, 0.9, 0.99][seed % 3])
        got = nucleus.typical_p(warper, scores)
        assert got is not None and torch.equal(_bits(got), _bits(warper(IDS, scores))), seed
    used = sum(s is not None for s in seen)
    assert used == 0 if near == 1e4 else used > 0


def test_top_p_near_the_top_of_a_large_vocabulary():
    # GPT-2-sized rows: most cuts are decided on the scores within 30 nats of the largest, without sorting the
    # row; ties at the cut, close calls and wide rows go to the sort. HF's bytes either way.
    decided = declined = 0
    for seed in range(24):
        g = torch.Generator().manual_seed(seed)
        scores = torch.randn(4, 50257, generator=g) * [2.0, 12.0, 25.0][seed % 3]  # x 2: all within 30 nats
        if seed % 4 == 1:
            scores = (scores * 2).round() / 2  # equal values among the top ones, some at the cut
        elif seed % 4 == 2:
            scores[torch.rand(4, 50257, generator=g) < 0.5] = -math.inf
        elif seed % 4 == 3:
            scores[:, :3] = 0.0
            scores[:, 3:6] = -0.0
            scores[:, 6:] -= 5
        warper = lp.TopPLogitsWarper([0.5, 0.9, 0.99, 0.3][seed % 4], min_tokens_to_keep=1 + 2 * (seed % 5 == 0))
        near = nucleus._top_p_near_the_top(warper, scores)
        decided, declined = decided + (near is not None), declined + (near is None)
        got = nucleus.top_p(warper, scores)
        if got is not None:
            assert torch.equal(_bits(got), _bits(warper(IDS, scores))), seed
    assert decided > 8 and declined > 8, (decided, declined)


def test_top_p_near_the_top_declines_a_cut_among_equal_scores():
    scores = torch.full((1, 50257), -40.0)
    scores[0, :4] = 3.0  # four equal top scores, a quarter of the mass each: top-p 0.6 cuts among them
    assert nucleus._top_p_near_the_top(lp.TopPLogitsWarper(0.6), scores) is None
    assert nucleus._top_p_near_the_top(lp.TopPLogitsWarper(1.0), scores) is None  # keeps everything with p > 0
    kept = nucleus._top_p_near_the_top(lp.TopPLogitsWarper(0.9), torch.cat([scores[:, :3], scores[:, 4:]], 1))
    assert kept is not None and float(kept) == 3.0
