"""`fastpath`: the same tokens and the same generator state as HF's processors + `torch.multinomial`, bit for bit.

Every comparison runs `plain_sample` (transformers' processors, softmax, `torch.multinomial`) and `sample` from
generators seeded alike, and asserts equal tokens (or equal errors) and equal generator states afterwards. The
score tensors include the cases where a shortcut could go wrong (ties at the top-k and top-p cuts, -inf, NaN,
top_k beyond the vocabulary, rows that keep different numbers of tokens), and the route counters show that both
the fast route and each fallback were really taken.
"""

from __future__ import annotations

import inspect
import os
import random
import subprocess
import sys

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessor
from transformers.generation import logits_process as lp

from lightning_gen import generate
from lightning_gen.decoding import _draws as draws, _fastpath as fastpath
from lightning_gen.decoding._fastpath import Sampler, plain_sample

V = 1000


def sample(processors, input_ids, scores, *, generator):
    """One sampling step through a fresh `Sampler`: what `generate` does at its first step. `(B,)`"""
    return Sampler(processors).sample(input_ids, scores, generator=generator)


@pytest.fixture(autouse=True)
def _fresh_stats(monkeypatch):
    # On whatever LIGHTNING_GEN_FAST_PATH says; small tensors normally take the direct route (the fast one would not
    # pay), here every size takes the fast route unless a test asks for the direct one (`use_route`).
    monkeypatch.setattr(fastpath, "ENABLED", True)
    monkeypatch.setattr(fastpath, "_MIN_NUMEL", 0)
    fastpath.stats.reset()


def use_route(route: str, monkeypatch) -> None:
    """Send every step to the ``"fast"`` route (any size) or the ``"direct"`` one (no size is large enough)."""
    monkeypatch.setattr(fastpath, "_MIN_NUMEL", 0 if route == "fast" else 1 << 62)


def taken(route: str) -> int:
    return getattr(fastpath.stats, route)


def bench_chain(top_k: int = 50, top_p: float = 0.9) -> lp.LogitsProcessorList:
    """The benchmark's chain: repetition penalty 1.2, temperature 0.8, top-k, top-p."""
    return lp.LogitsProcessorList([
        lp.RepetitionPenaltyLogitsProcessor(1.2), lp.TemperatureLogitsWarper(0.8),
        lp.TopKLogitsWarper(top_k), lp.TopPLogitsWarper(top_p),
    ])


CHAINS = {
    "bench": bench_chain(),
    "top_k": lp.LogitsProcessorList([lp.TopKLogitsWarper(50)]),
    "top_k_1": lp.LogitsProcessorList([lp.TopKLogitsWarper(1)]),
    "top_p_min_p": lp.LogitsProcessorList([
        lp.TemperatureLogitsWarper(0.7), lp.TopKLogitsWarper(20), lp.TopPLogitsWarper(0.5), lp.MinPLogitsWarper(0.1)]),
    "keep_3": lp.LogitsProcessorList([lp.TopKLogitsWarper(10), lp.TopPLogitsWarper(0.3, min_tokens_to_keep=3)]),
    "typical": lp.LogitsProcessorList([lp.TopKLogitsWarper(5), lp.TypicalLogitsWarper(0.9)]),
    "epsilon_norm": lp.LogitsProcessorList([
        lp.TopKLogitsWarper(40), lp.EpsilonLogitsWarper(3e-4), lp.LogitNormalization()]),
    "top_p_only": lp.LogitsProcessorList([lp.TopPLogitsWarper(0.9)]),
    "min_p_only": lp.LogitsProcessorList([lp.MinPLogitsWarper(0.1)]),
    "typical_only": lp.LogitsProcessorList([lp.TypicalLogitsWarper(0.9)]),
    # Without top-k, each warper by `_nucleus`: the matrix benchmark's five-processor chain, less its top-k.
    "nucleus_chain": lp.LogitsProcessorList([
        lp.RepetitionPenaltyLogitsProcessor(1.2), lp.TemperatureLogitsWarper(0.8), lp.TopPLogitsWarper(0.9),
        lp.MinPLogitsWarper(0.05), lp.TypicalLogitsWarper(0.95)]),
    "temperature_only": lp.LogitsProcessorList([lp.TemperatureLogitsWarper(1.3)]),
    "empty": lp.LogitsProcessorList([]),
    "top_k_beyond_vocab": lp.LogitsProcessorList([lp.TopKLogitsWarper(V + 10), lp.TopPLogitsWarper(0.8)]),
}


def check_same(chain, scores: torch.Tensor, seed: int, ids: torch.Tensor | None = None) -> None:
    """Assert `sample` == `plain_sample`: tokens (or error) and generator state."""
    ids = torch.randint(0, scores.shape[1], (scores.shape[0], 7), generator=torch.Generator().manual_seed(seed)) \
        if ids is None else ids
    g_plain, g_fast = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    try:
        expected, expected_error = plain_sample(chain, ids, scores.clone(), g_plain), None
    except (RuntimeError, ValueError) as err:  # multinomial's RuntimeError; some warpers' own ValueErrors
        expected, expected_error = None, err
    if expected_error is not None:
        with pytest.raises(type(expected_error)) as got:
            sample(chain, ids, scores.clone(), generator=g_fast)
        assert str(got.value) == str(expected_error)
    else:
        got = sample(chain, ids, scores.clone(), generator=g_fast)
        assert torch.equal(got, expected), (got, expected)
    assert torch.equal(g_fast.get_state(), g_plain.get_state())


def random_scores(seed: int, batch: int = 6, vocab: int = V) -> torch.Tensor:
    """Rows at different scales, so they keep different numbers of tokens."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.3, 1.0, 2.0, 4.0, 8.0, 30.0])[:batch, None]
    return torch.randn(batch, vocab, generator=g) * scale


# ------------------------------------------------------------------------------------------ plan
def test_plan_splits_the_chain_around_top_k():
    plan = fastpath._plan(bench_chain())
    assert [type(p) for p in plan.prefix] == [lp.RepetitionPenaltyLogitsProcessor, lp.TemperatureLogitsWarper]
    assert type(plan.top_k) is lp.TopKLogitsWarper and type(plan.top_p) is lp.TopPLogitsWarper
    assert plan.suffix == ()
    plan = fastpath._plan(CHAINS["top_p_min_p"])
    assert type(plan.top_p) is lp.TopPLogitsWarper and [type(p) for p in plan.suffix] == [lp.MinPLogitsWarper]
    # No top-k, or a warper after top-k that may raise -inf entries: everything runs as HF's own objects.
    assert fastpath._plan(CHAINS["top_p_only"]).top_k is None
    after = lp.LogitsProcessorList([lp.TopKLogitsWarper(5), lp.TemperatureLogitsWarper(2.0)])
    assert fastpath._plan(after).top_k is None
    soft = lp.LogitsProcessorList([lp.TopKLogitsWarper(5, filter_value=-1e4)])
    assert fastpath._plan(soft).top_k is None


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
    assert fastpath.stats.plain == 1 and fastpath.stats.fast == 0


def test_switch_off_takes_the_plain_route(monkeypatch):
    monkeypatch.setattr(fastpath, "ENABLED", False)
    check_same(bench_chain(), random_scores(0), seed=0)
    assert fastpath.stats.plain == 1 and fastpath.stats.fast == 0


def test_small_steps_call_hf_s_processors_directly(monkeypatch):
    monkeypatch.setattr(fastpath, "_MIN_NUMEL", 8192)
    for seed in range(3):
        check_same(CHAINS["bench"], random_scores(seed, batch=4, vocab=100), seed)
    assert fastpath.stats.direct == 3 and fastpath.stats.fast == 0


def test_known_processors_take_two_arguments():
    # `_run` calls them as `LogitsProcessorList` calls two-argument processors.
    for cls in fastpath._AS_IS:
        assert list(inspect.signature(cls.__call__).parameters) == ["self", "input_ids", "scores"], cls


def test_environment_variable_turns_it_off():
    code = "from lightning_gen.decoding import _fastpath as fastpath; print(fastpath.ENABLED)"
    env = {**os.environ, "LIGHTNING_GEN_FAST_PATH": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------ random scores
@pytest.mark.parametrize("route", ["fast", "direct"])
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_random_scores_match_bit_for_bit(name, route, monkeypatch):
    use_route(route, monkeypatch)
    for seed in range(12):
        check_same(CHAINS[name], random_scores(seed), seed)
    assert fastpath.stats.plain == 0 and taken(route) == 12
    # Benign scores never need a fallback, except where the chain has no shortcut for top-k.
    assert fastpath.stats.top_k_fallback == (12 if name == "top_k_beyond_vocab" and route == "fast" else 0)
    assert fastpath.stats.draw_fallback == 0
    # Typical-p hands a step back where two keys |-log p - entropy| round to one float but their logits differ.
    assert fastpath.stats.nucleus_fallback <= (6 if "typical" in name or name == "nucleus_chain" else 0)


def test_gpt2_sized_vocabulary():
    scores = torch.randn(8, 50257, generator=torch.Generator().manual_seed(0)) * 3
    for seed in range(4):
        check_same(bench_chain(), scores, seed)
    assert fastpath.stats.fast == 4 and fastpath.stats.top_k_fallback == 0


@pytest.mark.parametrize("route", ["fast", "direct"])
def test_global_generator_when_none_is_given(route, monkeypatch):
    use_route(route, monkeypatch)
    scores = random_scores(1)
    ids = torch.randint(0, V, (6, 5))
    for seed in range(4):
        torch.manual_seed(seed)
        expected = plain_sample(bench_chain(), ids, scores, None)
        state = torch.get_rng_state()
        torch.manual_seed(seed)
        assert torch.equal(sample(bench_chain(), ids, scores, generator=None), expected)
        assert torch.equal(torch.get_rng_state(), state)
    assert taken(route) == 4


def test_two_threads_draw_the_same():
    torch.set_num_threads(2)
    for seed in range(3):
        check_same(bench_chain(), torch.randn(8, 50257, generator=torch.Generator().manual_seed(seed)), seed)


# ------------------------------------------------------------------------------------------ adversarial
def tie_at_top_k(seed: int, k: int = 50) -> torch.Tensor:
    """The k-th and (k+1)-th largest scores are equal in every row: HF keeps both."""
    scores = random_scores(seed)
    order = scores.argsort(dim=-1, descending=True)
    kth = scores.gather(1, order[:, k - 1:k])
    return scores.scatter(1, order[:, k:k + 1], kth)


def tie_at_top_p(seed: int) -> torch.Tensor:
    """Top 50 in ten groups of five equal values, so top-p's cut often falls inside a group."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(6, V, generator=g) - 10
    levels = torch.linspace(3, 0, 10).repeat_interleave(5) + 0.1 * torch.rand(6, 1, generator=g)
    positions = torch.randperm(V, generator=g)[:50]
    scores[:, positions] = levels
    return scores


def quantized(seed: int) -> torch.Tensor:
    """Scores on a grid of 0.5: ties everywhere."""
    return (random_scores(seed) * 2).round() / 2


def sparse(seed: int) -> torch.Tensor:
    """Mostly -inf; rows 0 and 1 have fewer finite scores than top_k, row 2 a single one."""
    scores = random_scores(seed)
    g = torch.Generator().manual_seed(seed)
    scores[torch.rand(scores.shape, generator=g) < 0.9] = float("-inf")
    scores[0, 20:] = float("-inf")
    scores[1, 45:] = float("-inf")
    scores[2, 1:] = float("-inf")
    return scores


def signed_zeros(seed: int) -> torch.Tensor:
    """The top 50 are 25 of +0.0 and 25 of -0.0: equal values with different bits, and top-p cuts among them."""
    scores = -random_scores(seed).abs() - 1
    scores[:, :25] = 0.0
    scores[:, 25:50] = -0.0
    return scores


ADVERSARIAL = {"tie_at_top_k": tie_at_top_k, "tie_at_top_p": tie_at_top_p, "quantized": quantized,
               "sparse": sparse, "signed_zeros": signed_zeros}


@pytest.mark.parametrize("route", ["fast", "direct"])
@pytest.mark.parametrize("make", sorted(ADVERSARIAL))
@pytest.mark.parametrize("chain", ["bench", "top_k", "keep_3", "top_p_min_p", "top_p_only", "typical_only",
                                   "nucleus_chain"])
def test_adversarial_scores_match_bit_for_bit(make, chain, route, monkeypatch):
    use_route(route, monkeypatch)
    for seed in range(8):
        check_same(CHAINS[chain], ADVERSARIAL[make](seed), seed)
    assert taken(route) == 8


@pytest.mark.parametrize("make", ["tie_at_top_k", "tie_at_top_p", "sparse", "signed_zeros"])
def test_adversarial_scores_do_take_the_fallback(make):
    for seed in range(8):
        check_same(CHAINS["bench"], ADVERSARIAL[make](seed), seed)
    assert fastpath.stats.top_k_fallback > 0


@pytest.mark.parametrize("make", ["tie_at_top_p", "quantized"])
def test_adversarial_scores_without_top_k_do_take_the_nucleus_fallback(make):
    for seed in range(8):
        check_same(CHAINS["top_p_only"], ADVERSARIAL[make](seed), seed)
    assert fastpath.stats.nucleus_fallback > 0 and fastpath.stats.fast == 8


def test_ties_inside_the_candidates_but_not_at_a_cut_stay_on_the_fast_route():
    # Top 50: five equal scores of 5.0 (mass ~0.19 each) and 45 equal scores of 0.0 (~0.057 together), the rest far
    # below. Top-p 0.9 removes exactly the 45: ties on both sides, none across the cut.
    scores = random_scores(3) - 30
    scores[:, 100:105] = 5.0 / 0.8  # the chain divides by temperature 0.8
    scores[:, 200:245] = 0.0
    chain = lp.LogitsProcessorList(list(CHAINS["bench"])[1:])  # no repetition penalty: ids must not matter
    for seed in range(6):
        check_same(chain, scores, seed)
    assert fastpath.stats.fast == 6 and fastpath.stats.top_k_fallback == 0


@pytest.mark.parametrize("route", ["fast", "direct"])
@pytest.mark.parametrize("bad", ["nan", "inf", "all_masked"])
def test_invalid_scores_raise_what_multinomial_raises(bad, route, monkeypatch):
    use_route(route, monkeypatch)
    scores = random_scores(0)
    if bad == "nan":
        scores[2, 7] = float("nan")
    elif bad == "inf":
        scores[4, 9] = float("inf")
    else:
        scores[1] = float("-inf")
    for chain in ("bench", "top_p_only", "empty"):
        check_same(CHAINS[chain], scores, seed=0)


@pytest.mark.parametrize("route", ["fast", "direct"])
def test_float64_and_strided_scores_match(route, monkeypatch):
    use_route(route, monkeypatch)
    scores = random_scores(0).double()
    check_same(CHAINS["bench"], scores, seed=0)
    wide = random_scores(1, vocab=V + 24)[:, :V]  # a vocabulary cut, as `generate(vocab_size=...)` makes
    check_same(CHAINS["empty"], wide, seed=1)
    check_same(CHAINS["bench"], wide, seed=1)


@pytest.mark.parametrize("route", ["fast", "direct"])
def test_random_chains_on_random_scores(route, monkeypatch):
    """A fuzz over chains (penalty, temperature, top-k incl. >= V, top-p incl. 1.0, min-p, eta, normalization, several
    min_tokens_to_keep) and score kinds (ties, grids, mostly -inf, flat, one dominant token)."""
    use_route(route, monkeypatch)
    rng = random.Random(0)
    for case in range(150):
        vocab, batch = rng.choice([50, 257, 1000, 5003]), rng.choice([1, 3, 8])
        chain = []
        if rng.random() < 0.5:
            chain.append(lp.RepetitionPenaltyLogitsProcessor(rng.choice([1.1, 1.5, 0.8])))
        if rng.random() < 0.7:
            chain.append(lp.TemperatureLogitsWarper(rng.choice([0.3, 0.8, 2.5])))
        if rng.random() < 0.9:
            k = rng.choice([1, 2, 5, 50, 200, vocab - 1, vocab, vocab + 3])
            chain.append(lp.TopKLogitsWarper(k, min_tokens_to_keep=rng.choice([1, 3])))
        if rng.random() < 0.8:
            chain.append(lp.TopPLogitsWarper(rng.choice([0.05, 0.3, 0.9, 0.999, 1.0]),
                                             min_tokens_to_keep=rng.choice([1, 2, 7])))
        if rng.random() < 0.3:
            chain.append(lp.MinPLogitsWarper(rng.choice([0.01, 0.1, 0.5])))
        if rng.random() < 0.1:
            chain.append(lp.EtaLogitsWarper(0.001))
        if rng.random() < 0.1:
            chain.append(lp.LogitNormalization())
        g = torch.Generator().manual_seed(case)
        scores = torch.randn(batch, vocab, generator=g) * rng.choice([0.1, 1, 3, 10, 100])
        kind = rng.choice(["normal", "grid", "sparse", "flat", "peaked"])
        if kind == "grid":
            scores = (scores * 2).round() / 2
        elif kind == "sparse":
            scores[torch.rand(batch, vocab, generator=g) < 0.97] = float("-inf")
        elif kind == "flat":
            scores = torch.zeros(batch, vocab)
            scores[:, :rng.randint(1, vocab)] = 1.0
        elif kind == "peaked":
            scores[:, 0] += 50
        check_same(lp.LogitsProcessorList(chain), scores, case)
    if route == "fast":
        assert fastpath.stats.fast > 100 and fastpath.stats.top_k_fallback > 10
    else:
        assert fastpath.stats.direct == 150


# ------------------------------------------------------------------------------------------ the draw itself
def test_rounding_window_replays_torch_s_own_exponential(monkeypatch):
    # A window of 2**-30 marks a few values in 100 as unsure: each is recomputed by replaying exponential_.
    monkeypatch.setattr(draws, "WINDOW", 2.0 ** -30)
    monkeypatch.setattr(draws, "MAX_REPLAYS", 10_000)
    for seed in range(6):
        check_same(CHAINS["bench"], random_scores(seed, vocab=5000), seed)
        check_same(CHAINS["temperature_only"], random_scores(seed, vocab=5000), seed)
    assert fastpath.stats.replays > 0 and fastpath.stats.draw_fallback == 0


def test_whole_row_draws_replay_their_few_candidates(monkeypatch):
    # Without top-k the draw takes logarithms only where a token can still win; a window of 2**-26 marks about one
    # value in four of those as unsure.
    monkeypatch.setattr(draws, "WINDOW", 2.0 ** -26)
    monkeypatch.setattr(draws, "MAX_REPLAYS", 10_000)
    for seed in range(6):
        check_same(CHAINS["temperature_only"], random_scores(seed, vocab=5000), seed)
    assert fastpath.stats.replays > 0 and fastpath.stats.draw_fallback == 0


def test_too_many_unsure_values_hand_the_draw_to_multinomial(monkeypatch):
    monkeypatch.setattr(draws, "WINDOW", 2.0 ** -26)
    monkeypatch.setattr(draws, "MAX_REPLAYS", 0)
    for seed in range(4):
        check_same(CHAINS["temperature_only"], random_scores(seed, vocab=5000), seed)
    assert fastpath.stats.draw_fallback > 0


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=500, n_positions=64, initializer_range=0.2)
    return GPT2LMHeadModel(config).eval()


BENCH_SAMPLING = dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.2)


def hf_generate(model: nn.Module, prompts: torch.Tensor, seed: int, **kwargs) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.generate(prompts, attention_mask=torch.ones_like(prompts), **kwargs)


@pytest.mark.parametrize("fast", [True, False])
def test_generate_matches_hf_generate(gpt2, fast, monkeypatch):
    monkeypatch.setattr(fastpath, "ENABLED", fast)
    prompts = torch.randint(0, 500, (4, 6), generator=torch.Generator().manual_seed(0))
    kwargs = dict(max_new_tokens=20, pad_token_id=gpt2.config.eos_token_id, **BENCH_SAMPLING)
    for seed in range(3):
        expected = hf_generate(gpt2, prompts, seed, **kwargs)
        torch.manual_seed(12345)  # ours must not read the global RNG
        got = generate(gpt2, prompts, generator=torch.Generator().manual_seed(seed), **kwargs)
        assert torch.equal(got, expected)
    steps = 3 * 20
    assert (fastpath.stats.fast, fastpath.stats.plain) == ((steps, 0) if fast else (0, steps))


def test_generate_with_a_user_processor_falls_back_and_still_matches(gpt2):
    prompts = torch.randint(0, 500, (4, 6), generator=torch.Generator().manual_seed(1))
    kwargs = dict(max_new_tokens=12, pad_token_id=gpt2.config.eos_token_id, **BENCH_SAMPLING)
    user = [Shift()]
    expected = hf_generate(gpt2, prompts, 7, logits_processor=lp.LogitsProcessorList(user), **kwargs)
    got = generate(gpt2, prompts, generator=torch.Generator().manual_seed(7), logits_processor=user, **kwargs)
    assert torch.equal(got, expected)
    assert fastpath.stats.plain == 12 and fastpath.stats.fast == 0


@pytest.mark.parametrize("route", ["fast", "direct"])
def test_generate_stopping_early_leaves_the_generator_where_hf_leaves_it(gpt2, route, monkeypatch):
    # The direct route draws the exponentials of all steps ahead and must rewind what the steps not taken drew.
    use_route(route, monkeypatch)
    prompts = torch.randint(0, 500, (4, 6), generator=torch.Generator().manual_seed(2))
    kwargs = dict(max_new_tokens=40, eos_token_id=list(range(0, 500, 10)), pad_token_id=1, do_sample=True,
                  temperature=1.5, top_k=100)
    stopped_early = 0
    for seed in range(3):
        expected = hf_generate(gpt2, prompts, seed, **kwargs)
        hf_state = torch.get_rng_state()
        generator = torch.Generator().manual_seed(seed)
        got = generate(gpt2, prompts, generator=generator, **kwargs)
        assert torch.equal(got, expected)
        assert torch.equal(generator.get_state(), hf_state)
        stopped_early += got.shape[1] < prompts.shape[1] + 40
    assert stopped_early > 0 and taken(route) > 0


# ------------------------------------------------------------------------------------------ one sampler, many steps
@pytest.mark.parametrize("stop_after", [1, 5, 12])
def test_a_sampler_drawing_ahead_matches_step_by_step_draws(stop_after, monkeypatch):
    use_route("direct", monkeypatch)
    chain = CHAINS["bench"]
    sampler = fastpath.Sampler(chain, steps=12)
    ours, plain = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for step in range(stop_after):
        scores = random_scores(step, batch=4, vocab=100)
        ids = torch.randint(0, 100, (4, 5 + step), generator=torch.Generator().manual_seed(step))
        assert torch.equal(sampler.sample(ids, scores, generator=ours), plain_sample(chain, ids, scores, plain))
    assert sampler._stream is not None  # the exponentials were drawn ahead
    sampler.close()
    assert torch.equal(ours.get_state(), plain.get_state())
    assert fastpath.stats.direct == stop_after


@pytest.mark.parametrize("generator", [None, "default"])
def test_torch_s_default_generator_is_never_drawn_ahead(generator, monkeypatch):
    # The model may draw from it between steps.
    use_route("direct", monkeypatch)
    sampler = fastpath.Sampler(CHAINS["bench"], steps=8)
    scores, ids = random_scores(0, batch=4, vocab=100), torch.zeros(4, 3, dtype=torch.long)
    sampler.sample(ids, scores, generator=torch.default_generator if generator else None)
    assert sampler._stream is None


def test_copies_are_made_only_for_chains_that_could_write_into_the_logits():
    assert not fastpath.Sampler(lp.LogitsProcessorList(bench_chain()[1:])).needs_copy  # temperature first: divides
    assert not fastpath.Sampler(CHAINS["top_k"]).needs_copy
    for name in ("top_p_only", "min_p_only", "typical_only"):  # they only read the scores, then masked_fill
        assert not fastpath.Sampler(CHAINS[name]).needs_copy
    assert not fastpath.Sampler(CHAINS["empty"]).needs_copy  # softmax or argmax make new tensors
    assert fastpath.Sampler(bench_chain()).needs_copy  # a repetition penalty first
    assert fastpath.Sampler(lp.LogitsProcessorList([Shift()])).needs_copy  # a user's processor


class Keeper(LogitsProcessor):
    """A user's processor that keeps every scores tensor it is given, as a logging one might."""

    def __init__(self):
        self.seen = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.seen.append(scores)
        return scores


def test_the_copy_of_the_logits_is_reused_from_step_to_step_only_where_no_processor_can_keep_it():
    logits = [random_scores(seed, batch=2, vocab=300) for seed in range(3)]
    known = fastpath.Sampler(bench_chain())  # a repetition penalty first: it writes into a copy
    first = known.scores_of(logits[0])
    assert torch.equal(first, logits[0]) and first.data_ptr() != logits[0].data_ptr()
    second = known.scores_of(logits[1])
    assert second.data_ptr() == first.data_ptr() and torch.equal(second, logits[1])
    assert known.scores_of(logits[2][:1]).shape == (1, 300)  # another shape: storage of its own
    keeper = Keeper()
    user = fastpath.Sampler(lp.LogitsProcessorList([lp.RepetitionPenaltyLogitsProcessor(1.2), keeper]))
    for step in logits:  # each step's copy stays as that step gave it
        user.process(torch.zeros(2, 1, dtype=torch.long), user.scores_of(step))
    assert all(torch.equal(kept, lp.RepetitionPenaltyLogitsProcessor(1.2)(torch.zeros(2, 1, dtype=torch.long), step))
               for kept, step in zip(keeper.seen, logits))
    reader = fastpath.Sampler(CHAINS["top_k"])  # it writes into nothing: the logits as they are
    assert reader.scores_of(logits[0]) is logits[0]
    assert reader.scores_of(logits[0].double()).dtype == torch.float32


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


# ------------------------------------------------------------------------------------------ sync-free steps
def test_sync_free_sampling_draws_the_same_and_checks_at_the_end(monkeypatch):
    # The mode chosen off the CPU, forced here: the steps never read a value back, `finish` checks them all. (The
    # fast route is for large vocabularies on the CPU, where reading back costs nothing.)
    use_route("direct", monkeypatch)
    chain = CHAINS["bench"]
    sampler = fastpath.Sampler(chain, steps=6, sync_free=True)
    ours, plain = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    for step in range(6):
        scores, ids = random_scores(step), torch.randint(0, V, (6, 4), generator=torch.Generator().manual_seed(step))
        assert torch.equal(sampler.sample(ids, scores, generator=ours), plain_sample(chain, ids, scores, plain))
    assert sampler._route == sampler._direct_sync_free
    sampler.finish()
    sampler.close()
    assert torch.equal(ours.get_state(), plain.get_state())


def test_sync_free_sampling_raises_multinomial_s_error_at_finish(monkeypatch):
    use_route("direct", monkeypatch)
    sampler = fastpath.Sampler(CHAINS["bench"], steps=4, sync_free=True)
    generator = torch.Generator().manual_seed(0)
    for step in range(4):
        scores = random_scores(step)
        if step == 2:
            scores[3, 5] = float("nan")
        sampler.sample(torch.zeros(6, 2, dtype=torch.long), scores, generator=generator)  # no error yet
    with pytest.raises(RuntimeError) as expected:
        torch.multinomial(torch.full((2, 3), float("nan")), 1)
    with pytest.raises(RuntimeError) as got:
        sampler.finish()
    assert str(got.value) == str(expected.value)
    sampler.close()


def test_sync_free_greedy_raises_on_nan_at_finish():
    sampler = fastpath.Sampler(CHAINS["empty"], sync_free=True)
    scores = random_scores(0)
    assert torch.equal(sampler.greedy(torch.zeros(6, 2, dtype=torch.long), scores), scores.argmax(dim=-1))
    scores[1, 1] = float("nan")
    sampler.greedy(torch.zeros(6, 2, dtype=torch.long), scores)
    with pytest.raises(FloatingPointError, match="logits contain NaN"):
        sampler.finish()
    fastpath.Sampler(CHAINS["empty"], sync_free=True).finish()  # nothing to report


def test_off_the_cpu_steps_are_sync_free_by_default():
    sampler = fastpath.Sampler(CHAINS["empty"])
    sampler.greedy(torch.zeros(1, 1, dtype=torch.long), torch.randn(1, 5))
    assert sampler.sync_free is False
    meta = fastpath.Sampler(CHAINS["empty"])
    meta._sync_free(torch.empty(1, 5, device="meta"))
    assert meta.sync_free is True


@pytest.mark.parametrize("sync_free", [False, True])
def test_greedy_refuses_a_nan_anywhere_in_a_row(sync_free):
    # One argmax, then only the chosen scores are checked: argmax picks a row's NaN wherever it is.
    scores = torch.randn(3, 5000, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(3, 1, dtype=torch.long)
    sampler = Sampler(lp.LogitsProcessorList([]), sync_free=sync_free)
    assert torch.equal(sampler.greedy(ids, scores), scores.argmax(dim=-1))
    sampler.finish()
    scores[1, 4321] = float("nan")
    if sync_free:
        sampler.greedy(ids, scores)
        with pytest.raises(FloatingPointError, match="NaN"):
            sampler.finish()
    else:
        with pytest.raises(FloatingPointError, match="NaN"):
            sampler.greedy(ids, scores)
