"""`Sampler`: the same tokens and generator state as HF's processors + `torch.multinomial`, bit for bit.

Every comparison runs `plain_sample` (transformers' processors, softmax, `torch.multinomial`) and a `Sampler` from
generators seeded alike, and asserts equal tokens (or equal errors) and equal generator states afterwards. The
warper shortcuts are compared byte for byte with transformers' own warpers. Scores include what could make a
shortcut differ: ties at the top-k and top-p cuts, -inf, NaN and +inf, signed zeros, rows keeping different
numbers of tokens, k beyond the vocabulary; the route counters show that both the shortcut and each hand-back to
HF's code were really taken.
"""

from __future__ import annotations

import inspect
import math
import os
import random
import subprocess
import sys

import pytest
import torch
from tiny import tiny_gpt2
from torch import nn
from transformers import GPT2LMHeadModel, LogitsProcessor
from transformers.generation import logits_process as lp

from lightning_gen import generate
from lightning_gen.decoding import _sampler
from lightning_gen.decoding import _warpers as warpers
from lightning_gen.decoding._sampler import Sampler, plain_sample

V = 1000
IDS = torch.zeros(1, 1, dtype=torch.long)


@pytest.fixture(autouse=True)
def _every_size_exact(monkeypatch):
    # Whatever LIGHTNING_GEN_FAST_PATH says; small steps normally take the plain route (the shortcuts would not pay),
    # here every size takes the exact one unless a test says otherwise.
    monkeypatch.setattr(_sampler, "ENABLED", True)
    monkeypatch.setattr(_sampler, "_MIN_NUMEL", 0)
    _sampler.stats.reset()


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def bench_chain(top_k: int = 50, top_p: float = 0.9) -> lp.LogitsProcessorList:
    """`benchmarks/generate_vs_hf.py`'s chain: repetition penalty 1.2, temperature 0.8, top-k, top-p."""
    return lp.LogitsProcessorList([
        lp.RepetitionPenaltyLogitsProcessor(1.2), lp.TemperatureLogitsWarper(0.8),
        lp.TopKLogitsWarper(top_k), lp.TopPLogitsWarper(top_p),
    ])


CHAINS = {
    "bench": bench_chain(),
    "top_k": lp.LogitsProcessorList([lp.TopKLogitsWarper(50)]),
    "top_k_1": lp.LogitsProcessorList([lp.TopKLogitsWarper(1)]),
    "five": lp.LogitsProcessorList([
        lp.RepetitionPenaltyLogitsProcessor(1.2), lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(50),
        lp.TopPLogitsWarper(0.9), lp.MinPLogitsWarper(0.05)]),
    "keep_3": lp.LogitsProcessorList([lp.TopKLogitsWarper(10), lp.TopPLogitsWarper(0.3, min_tokens_to_keep=3)]),
    "top_p_only": lp.LogitsProcessorList([lp.TopPLogitsWarper(0.9)]),
    "min_p_only": lp.LogitsProcessorList([lp.MinPLogitsWarper(0.1)]),
    "typical_only": lp.LogitsProcessorList([lp.TypicalLogitsWarper(0.9)]),
    "epsilon_norm": lp.LogitsProcessorList([
        lp.TopKLogitsWarper(40), lp.EpsilonLogitsWarper(3e-4), lp.LogitNormalization()]),
    "temperature_only": lp.LogitsProcessorList([lp.TemperatureLogitsWarper(1.3)]),
    "empty": lp.LogitsProcessorList([]),
    "top_k_beyond_vocab": lp.LogitsProcessorList([lp.TopKLogitsWarper(V + 10), lp.TopPLogitsWarper(0.8)]),
}


def check_same(chain, scores: torch.Tensor, seed: int, ids: torch.Tensor | None = None) -> None:
    """Assert that a `Sampler`'s first step is `plain_sample`'s: tokens (or error) and generator state."""
    if ids is None:
        ids = torch.randint(0, scores.shape[1], (scores.shape[0], 7), generator=torch.Generator().manual_seed(seed))
    g_plain, g_ours = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    try:
        expected, expected_error = plain_sample(chain, ids, scores.clone(), g_plain), None
    except (RuntimeError, ValueError) as err:  # multinomial's RuntimeError; some warpers' own ValueErrors
        expected, expected_error = None, err
    if expected_error is not None:
        with pytest.raises(type(expected_error)) as got:
            Sampler(chain).sample(ids, scores.clone(), generator=g_ours)
        assert str(got.value) == str(expected_error)
    else:
        got = Sampler(chain).sample(ids, scores.clone(), generator=g_ours)
        assert torch.equal(got, expected), (got, expected)
    assert torch.equal(g_ours.get_state(), g_plain.get_state())


def random_scores(seed: int, batch: int = 6, vocab: int = V) -> torch.Tensor:
    """Rows at different scales, so they keep different numbers of tokens."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.3, 1.0, 2.0, 4.0, 8.0, 30.0])[:batch, None]
    return torch.randn(batch, vocab, generator=g) * scale


def hard_scores(seed: int) -> torch.Tensor:
    """One of the score kinds that can make a shortcut differ, chosen by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    batch, vocab = [(1, 2000), (3, 50), (6, 257)][seed % 3]
    scores = torch.randn(batch, vocab, generator=g) * [0.05, 1.0, 4.0, 12.0][seed % 4]
    kind = seed % 6
    if kind == 1:  # few distinct values: ties at any cut
        scores = (scores * 2).round() / 2
    elif kind == 2:  # masked entries, as a ban or an earlier top-k leaves them
        scores[torch.rand(batch, vocab, generator=g) < 0.7] = -math.inf
    elif kind == 3:  # signed zeros among the values
        scores[torch.rand(batch, vocab, generator=g) < 0.3] = 0.0
        scores[torch.rand(batch, vocab, generator=g) < 0.3] = -0.0
    elif kind == 4:  # exact duplicates of the largest values
        top = scores.topk(min(5, vocab), dim=-1).values
        scores[:, : top.shape[1]] = top
    return scores


# ------------------------------------------------------------------------------------------ routes
def test_known_processors_take_two_arguments():
    # The exact and sync-free routes call them as `LogitsProcessorList` calls two-argument processors.
    for cls in _sampler._KNOWN:
        assert list(inspect.signature(cls.__call__).parameters) == ["self", "input_ids", "scores"], cls


class Shift(LogitsProcessor):
    """A user's processor: adds 1 to token 3."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores + torch.nn.functional.one_hot(torch.tensor(3), scores.shape[-1])


class MyTopK(lp.TopKLogitsWarper):
    """A subclass is not transformers' class: it may compute anything."""


@pytest.mark.parametrize("chain", [
    lp.LogitsProcessorList([Shift(), lp.TopKLogitsWarper(5)]),
    lp.LogitsProcessorList([MyTopK(5)]),
    lambda ids, scores: scores,
])
def test_unknown_processors_take_the_plain_route(chain):
    check_same(chain, random_scores(0), seed=0)
    assert _sampler.stats.plain == 1 and _sampler.stats.exact == 0


def test_switched_off_or_small_steps_take_the_plain_route(monkeypatch):
    monkeypatch.setattr(_sampler, "_MIN_NUMEL", 8192)
    check_same(bench_chain(), random_scores(0, batch=4, vocab=100), seed=0)  # 400 scores
    check_same(bench_chain(), random_scores(0, batch=4, vocab=2048), seed=0)  # 8192 scores
    monkeypatch.setattr(_sampler, "ENABLED", False)
    check_same(bench_chain(), random_scores(0, batch=4, vocab=2048), seed=0)
    assert (_sampler.stats.plain, _sampler.stats.exact) == (2, 1)


def test_environment_variable_turns_the_shortcuts_off():
    code = "from lightning_gen.decoding import _sampler; print(_sampler.ENABLED)"
    env = {**os.environ, "LIGHTNING_GEN_FAST_PATH": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------ the warpers
@pytest.mark.parametrize("k", [1, 5, 50, 300])
def test_top_k_is_hf_s_warper_bit_for_bit_or_hands_back(k):
    decided = declined = 0
    for seed in range(60):
        scores = hard_scores(seed)
        if seed % 10 == 9:
            scores[0, seed % scores.shape[1]] = [math.nan, math.inf][seed % 2]
        warper = lp.TopKLogitsWarper(k, min_tokens_to_keep=1 + seed % 7 // 6)
        temperature = [None, 0.7, 1.3][seed % 3]
        kept = warpers.top_k(warper, scores, temperature)
        expected = warper(IDS, scores if temperature is None else scores / temperature)
        if kept is None:
            declined += 1
            continue
        decided += 1
        values, indices = kept
        assert torch.equal(_bits(warpers.materialize(values, indices, scores.shape[1])), _bits(expected)), seed
        assert torch.equal(values, expected.topk(warper.top_k, dim=-1).values)
    assert decided > 15, "design: most cases k does not cover are decided by one topk"
    assert declined > 5, "design: ties at the cut, NaN and inf are handed back"


def test_a_temperature_that_makes_values_equal_at_the_cut_hands_the_top_k_back():
    scores = torch.tensor([[3.0, 1.7000001668930054, 1.700000286102295, 1.0]])  # distinct, until divided by 0.8
    assert scores[0, 1] != scores[0, 2] and (scores[0, 1] / 0.8) == (scores[0, 2] / 0.8)
    assert warpers.top_k(lp.TopKLogitsWarper(1), scores, 0.8) is not None
    assert warpers.top_k(lp.TopKLogitsWarper(2), scores) is not None
    assert warpers.top_k(lp.TopKLogitsWarper(2), scores, 0.8) is None  # HF's top-k keeps three of the quotients
    chain = lp.LogitsProcessorList([lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(2)])
    check_same(chain, scores, 0)
    assert _sampler.stats.warper_fallbacks == 1


def test_top_p_is_hf_s_warper_bit_for_bit_or_hands_back():
    decided = declined = 0
    for seed in range(200):
        scores = hard_scores(seed)
        top_p = [0.05, 0.3, 0.9, 0.999, 1.0][seed % 5]
        warper = lp.TopPLogitsWarper(top_p, min_tokens_to_keep=[1, 1, 2, 7][seed % 4])
        out = warpers.top_p(warper, scores)
        if out is None:
            declined += 1
            continue
        decided += 1
        assert torch.equal(_bits(out), _bits(warper(IDS, scores))), seed
    assert decided > 150, "design: most cases are decided by a values-only sort"
    assert declined > 0, "design: equal values across the cut are handed back"


def test_top_p_right_after_top_k_needs_no_sort_and_is_hf_s_bytes():
    decided = 0
    for seed in range(200):
        scores = hard_scores(seed)
        top_k = lp.TopKLogitsWarper([1, 3, 20, 45][seed % 4])
        kept = warpers.top_k(top_k, scores)
        if kept is None:
            continue
        warper = lp.TopPLogitsWarper([0.05, 0.3, 0.9, 0.999, 1.0][seed % 5], min_tokens_to_keep=[1, 2, 7][seed % 3])
        values = warpers.top_p_kept(warper, kept[0], scores.shape[1])
        if values is not None:
            decided += 1
            got = warpers.materialize(values, kept[1], scores.shape[1])
            assert torch.equal(_bits(got), _bits(warper(IDS, top_k(IDS, scores)))), seed
    assert decided > 60


def test_min_p_on_a_top_k_s_candidates_is_hf_s_bytes():
    for seed in range(60):
        scores = torch.randn(4, 50257, generator=torch.Generator().manual_seed(seed)) * [0.05, 1.0, 6.0][seed % 3]
        top_k = lp.TopKLogitsWarper([1, 5, 50][seed % 3])
        values, indices = warpers.top_k(top_k, scores)
        warper = lp.MinPLogitsWarper([0.01, 0.1, 0.5, 1.0][seed % 4])
        got = warpers.materialize(warpers.min_p_kept(warper, values, indices, 50257), indices, 50257)
        assert torch.equal(_bits(got), _bits(warper(IDS, top_k(IDS, scores)))), seed


@pytest.mark.parametrize("bad", ["nan", "inf", "all_masked"])
def test_a_row_top_p_cannot_decide_is_handed_back(bad):
    scores = random_scores(0)
    if bad == "all_masked":
        scores[1] = -math.inf
    else:
        scores[1, 17] = math.nan if bad == "nan" else math.inf
    assert warpers.top_p(lp.TopPLogitsWarper(0.8), scores) is None
    assert warpers.top_p(lp.TopPLogitsWarper(0.5), torch.zeros(1, 1000)) is None  # every value ties at the cut


def test_top_p_of_a_vocabulary_cut_is_hf_s_bytes():
    scores = torch.randn(2, 1200, generator=torch.Generator().manual_seed(3))[:, :1000]  # as `vocab_size=` slices
    warper = lp.TopPLogitsWarper(0.9)
    assert torch.equal(_bits(warpers.top_p(warper, scores)), _bits(warper(IDS, scores)))


# ------------------------------------------------------------------------------------------ the exact route
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_random_scores_give_hf_s_tokens_without_a_hand_back(name):
    for seed in range(12):
        check_same(CHAINS[name], random_scores(seed), seed)
    assert _sampler.stats.plain == 0 and _sampler.stats.exact == 12
    # Benign scores never need a hand-back, except where top-k covers the whole row.
    assert _sampler.stats.warper_fallbacks == (12 if name == "top_k_beyond_vocab" else 0)
    assert _sampler.stats.draw_fallbacks == 0


@pytest.mark.parametrize("name", ["bench", "five", "top_k"])
def test_a_draw_handed_back_after_a_top_k_is_multinomial_s_over_hf_s_whole_rows(name, monkeypatch):
    """Where the exact draw cannot promise a token (a logarithm near a rounding boundary, a uniform of 0), the step
    that kept only the top-k's candidates builds HF's whole rows for multinomial."""
    from lightning_gen.decoding import _draws

    monkeypatch.setattr(_draws, "_tokens", lambda *args: None)
    for seed in range(4):
        check_same(CHAINS[name], random_scores(seed), seed)
    assert _sampler.stats.exact == 4 and _sampler.stats.draw_fallbacks == 4 and _sampler.stats.warper_fallbacks == 0


def test_random_chains_on_hard_scores():
    """A fuzz over chains (penalty, temperature, top-k incl. >= V, top-p incl. 1.0, min-p, typical, eta,
    normalization, several min_tokens_to_keep) and score kinds (ties, grids, mostly -inf, flat, one dominant token,
    NaN)."""
    rng = random.Random(0)
    for case in range(200):
        vocab, batch = rng.choice([50, 257, 1000, 5003]), rng.choice([1, 3, 8])
        chain = []
        if rng.random() < 0.5:
            chain.append(lp.RepetitionPenaltyLogitsProcessor(rng.choice([1.1, 1.5, 0.8])))
        if rng.random() < 0.7:
            chain.append(lp.TemperatureLogitsWarper(rng.choice([0.3, 0.8, 2.5])))
        if rng.random() < 0.8:
            k = rng.choice([1, 2, 5, 50, 200, vocab - 1, vocab, vocab + 3])
            chain.append(lp.TopKLogitsWarper(k, min_tokens_to_keep=rng.choice([1, 3])))
        if rng.random() < 0.8:
            chain.append(lp.TopPLogitsWarper(rng.choice([0.05, 0.3, 0.9, 0.999, 1.0]),
                                             min_tokens_to_keep=rng.choice([1, 2, 7])))
        for warper, chance in ((lp.MinPLogitsWarper(rng.choice([0.01, 0.1, 0.5])), 0.3),
                               (lp.TypicalLogitsWarper(0.9), 0.1), (lp.EtaLogitsWarper(0.001), 0.1),
                               (lp.LogitNormalization(), 0.1)):
            if rng.random() < chance:
                chain.append(warper)
        g = torch.Generator().manual_seed(case)
        scores = torch.randn(batch, vocab, generator=g) * rng.choice([0.1, 1, 3, 10, 100])
        kind = rng.choice(["normal", "grid", "sparse", "flat", "peaked", "nan"])
        if kind == "grid":
            scores = (scores * 2).round() / 2
        elif kind == "sparse":
            scores[torch.rand(batch, vocab, generator=g) < 0.97] = -math.inf
        elif kind == "flat":
            scores = torch.zeros(batch, vocab)
            scores[:, :rng.randint(1, vocab)] = 1.0
        elif kind == "peaked":
            scores[:, 0] += 50
        elif kind == "nan":
            scores[0, rng.randrange(vocab)] = math.nan
        check_same(lp.LogitsProcessorList(chain), scores, case)
    assert _sampler.stats.exact == 200
    assert _sampler.stats.warper_fallbacks > 20 and _sampler.stats.draw_fallbacks > 5, "design: hand-backs happen"


def test_gpt2_sized_vocabulary_and_two_threads():
    torch.set_num_threads(2)
    for seed in range(3):
        scores = torch.randn(8, 50257, generator=torch.Generator().manual_seed(seed)) * [0.05, 3.0, 10.0][seed]
        check_same(CHAINS["five"], scores, seed)
        check_same(CHAINS["top_p_only"], scores, seed)
    assert _sampler.stats.exact == 6 and _sampler.stats.warper_fallbacks == _sampler.stats.draw_fallbacks == 0


def test_torch_s_default_generator_when_none_is_given():
    scores, ids = random_scores(1), torch.randint(0, V, (6, 5))
    for seed in range(4):
        torch.manual_seed(seed)
        expected = plain_sample(bench_chain(), ids, scores, None)
        state = torch.get_rng_state()
        torch.manual_seed(seed)
        assert torch.equal(Sampler(bench_chain()).sample(ids, scores, generator=None), expected)
        assert torch.equal(torch.get_rng_state(), state)
    assert _sampler.stats.exact == 4


def test_float64_and_strided_scores():
    check_same(CHAINS["bench"], random_scores(0).double(), seed=0)  # the warpers run as HF's, then multinomial
    wide = random_scores(1, vocab=V + 24)[:, :V]  # a vocabulary cut, as `generate(vocab_size=...)` makes
    check_same(CHAINS["empty"], wide, seed=1)
    check_same(CHAINS["bench"], wide, seed=1)


# ------------------------------------------------------------------------------------------ sync-free steps
def test_sync_free_sampling_draws_the_same_and_checks_at_the_end():
    # The mode chosen off the CPU, forced here: the steps never read a value back, `finish` checks them all.
    sampler = Sampler(CHAINS["bench"], sync_free=True)
    ours, plain = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    for step in range(6):
        scores, ids = random_scores(step), torch.randint(0, V, (6, 4), generator=torch.Generator().manual_seed(step))
        assert torch.equal(sampler.sample(ids, scores, generator=ours), plain_sample(CHAINS["bench"], ids, scores,
                                                                                      plain))
    assert _sampler.stats.sync_free == 6
    sampler.finish()
    assert torch.equal(ours.get_state(), plain.get_state())


def test_sync_free_sampling_raises_multinomial_s_error_at_finish():
    sampler = Sampler(CHAINS["bench"], sync_free=True)
    generator = torch.Generator().manual_seed(0)
    for step in range(4):
        scores = random_scores(step)
        if step == 2:
            scores[3, 5] = math.nan
        sampler.sample(torch.zeros(6, 2, dtype=torch.long), scores, generator=generator)  # no error yet
    with pytest.raises(RuntimeError) as expected:
        torch.multinomial(torch.full((2, 3), math.nan), 1)
    with pytest.raises(RuntimeError) as got:
        sampler.finish()
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("sync_free", [False, True])
def test_greedy_refuses_a_nan_anywhere_in_a_row(sync_free):
    # One argmax, then only the chosen scores are checked: argmax picks a row's NaN wherever it is.
    scores = torch.randn(3, 5000, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(3, 1, dtype=torch.long)
    sampler = Sampler(lp.LogitsProcessorList([]), sync_free=sync_free)
    assert torch.equal(sampler.greedy(ids, scores), scores.argmax(dim=-1))
    sampler.finish()
    scores[1, 4321] = math.nan
    if sync_free:
        sampler.greedy(ids, scores)
        with pytest.raises(FloatingPointError, match="NaN"):
            sampler.finish()
    else:
        with pytest.raises(FloatingPointError, match="NaN"):
            sampler.greedy(ids, scores)


def test_off_the_cpu_steps_are_sync_free_by_default():
    sampler = Sampler(CHAINS["empty"])
    sampler.greedy(torch.zeros(1, 1, dtype=torch.long), torch.randn(1, 5))
    assert sampler.sync_free is False
    meta = Sampler(CHAINS["empty"])
    meta._sync_free(torch.empty(1, 5, device="meta"))
    assert meta.sync_free is True


def test_rewind_leaves_the_generator_as_before_the_steps_taken_back():
    sampler, generator = Sampler(CHAINS["bench"], rewindable=3), torch.Generator().manual_seed(5)
    ids = torch.zeros(6, 2, dtype=torch.long)
    sampler.sample(ids, random_scores(0), generator=generator)
    after_one = generator.get_state()
    for step in range(1, 4):
        sampler.sample(ids, random_scores(step), generator=generator)
    sampler.rewind(3)
    assert torch.equal(generator.get_state(), after_one)


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def gpt2() -> GPT2LMHeadModel:
    return tiny_gpt2(500, initializer_range=0.2, bos_token_id=50256, eos_token_id=50256)  # GPT-2's, beyond the 500


def hf_generate(model: nn.Module, prompts: torch.Tensor, seed: int, **kwargs) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.generate(prompts, attention_mask=torch.ones_like(prompts), **kwargs)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("options", [dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.2),
                                     dict(do_sample=True, top_p=0.8, top_k=0)])
def test_generate_matches_hf_generate(gpt2, exact, options, monkeypatch):
    monkeypatch.setattr(_sampler, "ENABLED", exact)
    prompts = torch.randint(0, 500, (4, 6), generator=torch.Generator().manual_seed(0))
    kwargs = dict(max_new_tokens=20, pad_token_id=gpt2.config.eos_token_id, **options)
    for seed in range(3):
        expected = hf_generate(gpt2, prompts, seed, **kwargs)
        torch.manual_seed(12345)  # ours must not read the global RNG
        got = generate(gpt2, prompts, generator=torch.Generator().manual_seed(seed), **kwargs)
        assert torch.equal(got, expected)
    assert (_sampler.stats.exact, _sampler.stats.plain) == ((60, 0) if exact else (0, 60))


def test_generate_with_a_user_processor_takes_the_plain_route(gpt2):
    prompts = torch.randint(0, 500, (4, 6), generator=torch.Generator().manual_seed(1))
    kwargs = dict(max_new_tokens=12, pad_token_id=gpt2.config.eos_token_id, do_sample=True, top_k=50)
    expected = hf_generate(gpt2, prompts, 7, logits_processor=lp.LogitsProcessorList([Shift()]), **kwargs)
    got = generate(gpt2, prompts, generator=torch.Generator().manual_seed(7), logits_processor=[Shift()], **kwargs)
    assert torch.equal(got, expected)
    assert _sampler.stats.plain == 12 and _sampler.stats.exact == 0


@pytest.mark.parametrize("options", [
    dict(do_sample=True, temperature=0.7, top_k=5), dict(do_sample=True, top_k=5), dict(do_sample=False),
    dict(do_sample=True, repetition_penalty=1.3, top_k=5), dict(do_sample=True, top_p=0.8),
    dict(do_sample=True, min_p=0.1), dict(do_sample=True, typical_p=0.8),
])
def test_generate_never_writes_into_the_model_s_logits(options):
    class Fixed(nn.Module):
        """Returns the same logits tensor at every call."""

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1))
            self.logits = torch.randn(2, 1, 20, generator=torch.Generator().manual_seed(0))

        def forward(self, ids):
            return self.logits

    model = Fixed()
    before = model.logits.clone()
    generate(model, torch.zeros(2, 3, dtype=torch.long), max_new_tokens=6,
             generator=torch.Generator().manual_seed(0), **options)
    assert torch.equal(model.logits, before)
