"""`draws`: torch.multinomial's draw and exponential_'s stream, reproduced bit for bit with the same generator state."""

from __future__ import annotations

import pytest
import torch

from lightning_gen.decoding import _draws as draws
from lightning_gen.decoding._draws import ExponentialStream, multinomial


def softmax_rows(seed: int, batch: int = 4, vocab: int = 100) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, vocab, generator=g) * torch.tensor([0.5, 2.0, 8.0, 40.0])[:batch, None]
    scores[torch.rand(batch, vocab, generator=g) < 0.5] = float("-inf")  # top-k-like zeros
    scores[:, 0] = 1.0  # every row keeps a token
    return torch.softmax(scores, dim=-1)


def test_emulation_premises_hold_on_this_torch():
    assert draws.emulated()


@pytest.mark.parametrize("with_stream", [False, True])
def test_multinomial_draws_what_torch_multinomial_draws(with_stream):
    for seed in range(20):
        probs = softmax_rows(seed)
        ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        stream = ExponentialStream(ours, steps=1) if with_stream else None
        got = multinomial(probs, ours, stream)
        if stream is not None:
            stream.close()
        assert torch.equal(got, torch.multinomial(probs, 1, generator=theirs).squeeze(1))
        assert torch.equal(ours.get_state(), theirs.get_state())


def test_multinomial_with_the_default_generator():
    probs = softmax_rows(1)
    torch.manual_seed(5)
    expected = torch.multinomial(probs, 1).squeeze(1)
    state = torch.get_rng_state()
    torch.manual_seed(5)
    assert torch.equal(multinomial(probs, None), expected)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("bad", ["nan", "inf", "all_masked"])
def test_an_invalid_softmax_row_raises_multinomial_s_error_before_drawing(bad):
    scores = torch.randn(3, 50)
    scores[1, 4] = {"nan": float("nan"), "inf": float("inf"), "all_masked": float("-inf")}[bad]
    if bad == "all_masked":
        scores[1] = float("-inf")
    probs = torch.softmax(scores, dim=-1)
    with pytest.raises(RuntimeError) as expected:
        torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(0))
    ours = torch.Generator().manual_seed(0)
    stream = ExponentialStream(ours, steps=4)
    with pytest.raises(RuntimeError) as got:
        multinomial(probs, ours, stream)
    stream.close()
    assert str(got.value) == str(expected.value)
    assert torch.equal(ours.get_state(), torch.Generator().manual_seed(0).get_state())


@pytest.mark.parametrize("block_steps", [1, 3, 100])
@pytest.mark.parametrize("taken", [0, 1, 7, 10])
def test_a_stream_matches_step_by_step_exponentials_and_rewinds_what_it_did_not_use(block_steps, taken, monkeypatch):
    shape = (3, 40)
    monkeypatch.setattr(draws, "BLOCK_ELEMENTS", block_steps * 120)
    ours, theirs = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    stream = ExponentialStream(ours, steps=10)
    for _ in range(taken):
        assert torch.equal(stream.next(shape), torch.empty(shape).exponential_(1, generator=theirs))
    stream.close()
    assert torch.equal(ours.get_state(), theirs.get_state())


def test_a_stream_follows_a_change_of_shape():
    ours, theirs = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    stream = ExponentialStream(ours, steps=10)
    for shape in [(2, 30), (2, 30), (3, 30), (3, 30), (2, 30)]:
        assert torch.equal(stream.next(shape), torch.empty(shape).exponential_(1, generator=theirs))
    stream.close()
    assert torch.equal(ours.get_state(), theirs.get_state())


def test_a_block_near_float32_rounding_boundaries_is_drawn_by_torch_itself(monkeypatch):
    # A vectorised log1p off by 2**-26 (relative) would round many values differently from torch's scalar one; a
    # window of 2**-20 marks every block as unsure, so each is redrawn by exponential_ from the saved state.
    log1p = torch.log1p
    monkeypatch.setattr(torch, "log1p", lambda x: log1p(x) * (1 + 2.0 ** -26))
    monkeypatch.setattr(draws, "WINDOW", 2.0 ** -20)
    ours, theirs = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    stream = ExponentialStream(ours, steps=5)
    for _ in range(5):
        assert torch.equal(stream.next((4, 64)), torch.empty(4, 64).exponential_(1, generator=theirs))
    stream.close()
    assert torch.equal(ours.get_state(), theirs.get_state())


def test_a_stream_never_draws_more_steps_than_announced():
    ours = torch.Generator().manual_seed(4)
    stream = ExponentialStream(ours, steps=3)
    for _ in range(3):
        stream.next((2, 10))
    # Three steps drawn, no rewind needed: the state is that of three step-by-step draws.
    theirs = torch.Generator().manual_seed(4)
    for _ in range(3):
        torch.empty(2, 10).exponential_(1, generator=theirs)
    assert torch.equal(ours.get_state(), theirs.get_state())
    stream.close()
    assert torch.equal(ours.get_state(), theirs.get_state())


def test_a_device_that_cannot_run_the_check_is_not_emulated():
    # The meta device has no generator: the check fails, so the draw there is torch.multinomial's own.
    assert not draws.emulated("meta")


class _Stats:
    replays = draw_fallback = 0


def _exact_argmax(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """multinomial's draw for these uniforms, the long way: every logarithm, then argmax."""
    q = torch.log1p(uniform.neg()).neg().float()
    return (probs / q).argmax(dim=-1)


@pytest.mark.parametrize("scale", [0.05, 1.0, 8.0, 40.0])
def test_bounded_draw_is_the_argmax_of_every_ratio(scale):
    # Peaked, flat and masked rows; `_bounded_draw` takes logarithms only where a token can still win.
    for seed in range(30):
        g = torch.Generator().manual_seed(seed)
        scores = torch.randn(4, 3000, generator=g) * scale
        scores[torch.rand(4, 3000, generator=g) < 0.3] = float("-inf")
        probs = torch.softmax(scores, dim=-1)
        state = torch.Generator().manual_seed(seed).get_state()
        bits = draws.uniform_bits(probs.shape, torch.Generator().manual_seed(seed))
        got = draws._bounded_draw(probs, bits, state, _Stats())
        assert torch.equal(got, _exact_argmax(probs, draws.to_uniform(bits)))


def test_bounded_draw_breaks_ties_as_argmax_does():
    # Two tokens with the same probability and the same uniform tie exactly: argmax takes the lower index.
    probs = torch.softmax(torch.tensor([[0.0, 2.0, 1.0, 2.0, 0.5]]), dim=-1)
    bits = _bits(torch.tensor([[0.5, 0.01, 0.3, 0.01, 0.9]], dtype=torch.float64))
    state = torch.Generator().manual_seed(0).get_state()
    uniform = draws.to_uniform(bits)
    assert int(draws._bounded_draw(probs, bits, state, _Stats())[0]) == 1 == int(_exact_argmax(probs, uniform)[0])


def test_bounded_draw_declines_a_zero_uniform_and_a_nan_row():
    probs = torch.softmax(torch.randn(2, 50, generator=torch.Generator().manual_seed(0)), dim=-1)
    bits = draws.uniform_bits((2, 50), torch.Generator().manual_seed(1))
    state = torch.Generator().manual_seed(0).get_state()
    zero = bits.clone()
    zero[1, 7] = 0  # u == 0, so q == 0: multinomial's own kernel decides what p / 0 means
    assert draws._bounded_draw(probs, zero, state, _Stats()) is None
    nan = probs.clone()
    nan[0] = float("nan")  # softmax of a row with NaN: multinomial raises
    assert draws._bounded_draw(nan, bits, state, _Stats()) is None


def _bits(uniform: torch.Tensor) -> torch.Tensor:
    """`uniform_bits` for hand-picked uniforms: the nearest multiples of 2**-53."""
    return (uniform * 2.0 ** 53).round().long()


def test_uniform_bits_are_uniform_s_draws():
    # int64 random_'s low 53 bits, scaled: float64 uniform_'s values, and the generator left where it leaves it.
    for shape in [(3, 7), (8, 50257), (1,)]:
        a, b = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
        bits = draws.uniform_bits(shape, a)
        assert torch.equal(draws.to_uniform(bits), torch.empty(shape, dtype=torch.float64).uniform_(generator=b))
        assert torch.equal(a.get_state(), b.get_state())


def test_uniform_bits_in_scratch_storage_are_the_same_draws_in_the_same_storage_each_step():
    scratch = draws.Scratch()
    a, b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    first = draws.uniform_bits((4, 9000), a, scratch)
    address = first.data_ptr()
    assert torch.equal(first, draws.uniform_bits((4, 9000), b))
    second = draws.uniform_bits((4, 9000), a, scratch)
    assert second.data_ptr() == address and torch.equal(second, draws.uniform_bits((4, 9000), b))
    assert torch.equal(a.get_state(), b.get_state())
    assert draws.uniform_bits((2, 9000), a, scratch).shape == (2, 9000)  # another shape: storage of its own


def test_any_zero_finds_a_single_zero_uniform():
    bits = draws.uniform_bits((8, 50257), torch.Generator().manual_seed(3))
    assert not draws.any_zero(bits)
    bits[5, 40000] = 0
    assert draws.any_zero(bits)
