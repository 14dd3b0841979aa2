"""`_draws`: torch.multinomial's draw, bit for bit and with the same generator state, or a hand-back."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_gen.decoding import _draws as draws


def softmax_rows(seed: int, batch: int = 4, vocab: int = 3000, scale: float = 2.0) -> torch.Tensor:
    """Rows from flat to peaked, half of each masked as a top-k or top-p leaves them."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, vocab, generator=g) * scale * torch.tensor([0.02, 1.0, 4.0, 20.0])[:batch, None]
    scores[torch.rand(batch, vocab, generator=g) < 0.5] = -math.inf
    scores[:, 0] = 1.0  # every row keeps a token
    return torch.softmax(scores, dim=-1)


def _multinomial(probs: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1), generator.get_state()


def test_the_premises_hold_on_this_torch():
    assert draws.emulated()
    assert not draws.emulated("meta")  # no generator there: multinomial draws


@pytest.mark.parametrize("scale", [0.05, 1.0, 8.0])
@pytest.mark.parametrize("vocab", [50, 3000, 50257])
def test_draw_is_multinomial_s_draw(scale, vocab):
    for seed in range(6):
        probs = softmax_rows(seed, vocab=vocab, scale=scale)
        generator = torch.Generator().manual_seed(seed)
        tokens, state = _multinomial(probs, seed)
        assert torch.equal(draws.draw(probs, generator), tokens)
        assert torch.equal(generator.get_state(), state)


def test_draw_with_torch_s_default_generator():
    probs = softmax_rows(1)
    torch.manual_seed(5)
    expected = torch.multinomial(probs, 1).squeeze(1)
    state = torch.get_rng_state()
    torch.manual_seed(5)
    assert torch.equal(draws.draw(probs, None), expected)
    assert torch.equal(torch.get_rng_state(), state)


def test_draw_reuses_the_storage_it_is_given():
    probs, out = softmax_rows(2), torch.empty(4, 3000, dtype=torch.float64)
    tokens, _ = _multinomial(probs, 2)
    assert torch.equal(draws.draw(probs, torch.Generator().manual_seed(2), out), tokens)
    uniforms = torch.empty(4, 3000, dtype=torch.float64).uniform_(generator=torch.Generator().manual_seed(2))
    assert torch.equal(out, uniforms)


def test_equal_ratios_go_to_the_lowest_index_as_argmax_does():
    probs = torch.softmax(torch.tensor([[0.0, 2.0, 1.0, 2.0, 0.5]]), dim=-1)
    u = torch.tensor([[0.5, 0.01, 0.3, 0.01, 0.9]], dtype=torch.float64)  # tokens 1 and 3 tie exactly
    q = torch.log1p(u.neg()).neg().float()
    found = draws._could_win(probs, u)
    assert int(draws._winner(probs[found], u, *found)[0]) == 1 == int((probs / q).argmax(dim=-1)[0])
    everywhere = torch.zeros(5, dtype=torch.long), torch.tensor([4, 3, 2, 1, 0])  # candidates in any order
    assert int(draws._winner(probs[everywhere], u, *everywhere)[0]) == 1


def top_k_rows(seed: int, k: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities that are 0 outside each row's top ``k``, and those ``k`` indices."""
    scores = torch.randn(4, 3000, generator=torch.Generator().manual_seed(seed)) * [0.05, 1.0, 8.0][seed % 3]
    indices = scores.topk(k, dim=-1).indices
    masked = torch.full_like(scores, -math.inf).scatter_(1, indices, scores.gather(1, indices))
    return torch.softmax(masked, dim=-1), indices


def test_a_draw_among_top_k_candidates_is_multinomial_s():
    for seed in range(12):
        probs, candidates = top_k_rows(seed, k=[1, 5, 50][seed % 3])
        generator = torch.Generator().manual_seed(seed)
        tokens, state = _multinomial(probs, seed)
        out = torch.empty(probs.shape, dtype=torch.float64)
        assert torch.equal(draws.draw(probs.gather(1, candidates), generator, out, candidates), tokens)
        assert torch.equal(generator.get_state(), state)
    with pytest.raises(ValueError, match=r"`out`, float64 storage of the whole rows' shape \(B, V\), is required"):
        draws.draw(probs.gather(1, candidates), generator, candidates=candidates)


@pytest.mark.parametrize("candidates", [False, True], ids=["whole rows", "candidates"])
@pytest.mark.parametrize("bad", ["zero uniform", "nan row"])
def test_what_multinomial_alone_decides_is_handed_back(bad, candidates):
    probs, indices = top_k_rows(0)
    u = torch.empty(probs.shape, dtype=torch.float64).uniform_(generator=torch.Generator().manual_seed(1))

    def tokens():
        return draws._tokens(probs.gather(1, indices), u, indices) if candidates else draws._tokens(probs, u, None)

    assert tokens() is not None
    if bad == "zero uniform":
        u[1, int(probs[1].argmin())] = 0.0  # q == 0 where p == 0: multinomial's 0 / 0 is a NaN that argmax picks
    else:
        probs[2] = math.nan  # softmax of a row with NaN: multinomial raises
    assert tokens() is None


def test_an_invalid_row_leaves_the_generator_untouched():
    probs = softmax_rows(0)
    probs[1] = math.nan
    generator = torch.Generator().manual_seed(3)
    assert draws.draw(probs, generator) is None
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(3).get_state())
    with pytest.raises(RuntimeError) as expected:
        torch.multinomial(probs, 1)
    assert str(draws.invalid_distribution_error()) == str(expected.value)


def test_a_logarithm_near_a_float32_rounding_boundary_is_handed_back(monkeypatch):
    # A window of 2**-20 marks about one logarithm in eight as unsure: those draws go back to multinomial.
    monkeypatch.setattr(draws, "WINDOW", 2.0 ** -20)
    declined = 0
    for seed in range(30):
        probs = softmax_rows(seed, vocab=500)
        generator = torch.Generator().manual_seed(seed)
        tokens = draws.draw(probs, generator)
        if tokens is None:
            declined += 1
            assert torch.equal(generator.get_state(), torch.Generator().manual_seed(seed).get_state())
        else:
            assert torch.equal(tokens, _multinomial(probs, seed)[0])
    assert declined > 3


def test_the_sync_free_draw_is_multinomial_s():
    for seed in range(5):
        probs = softmax_rows(seed)
        generator = torch.Generator().manual_seed(seed)
        tokens, state = _multinomial(probs, seed)
        assert torch.equal(draws.argmax_draw(probs, generator), tokens)
        assert torch.equal(generator.get_state(), state)
