"""`lightning_gen.decoding._chain`: the in-place repetition penalty and n-gram ban, and numpy's argmax, are HF's.

Fuzzed against transformers' own processors on sequences from small alphabets (every token repeated, n-grams
recurring), ids at both ends of the vocabulary and past it, and scores with -inf, NaN, signed zeros and ties;
every comparison is of the bytes.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation import logits_process as lp

from lightning_gen.decoding import _chain as chain_


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def _case(seed: int, vocab: int = 300):
    g = torch.Generator().manual_seed(seed)
    batch, length = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(1, 40, (1,), generator=g))
    alphabet = [3, 12, vocab][seed % 3]  # few tokens: repeats and recurring n-grams everywhere
    ids = torch.randint(0, alphabet, (batch, length), generator=g)
    ids[:, 0] = torch.tensor([0, vocab - 1])[seed % 2]  # both ends of the vocabulary
    scores = torch.randn(batch, vocab, generator=g) * 3
    kind = seed % 4
    if kind == 1:
        scores[torch.rand(batch, vocab, generator=g) < 0.3] = -math.inf
    elif kind == 2:
        scores[torch.rand(batch, vocab, generator=g) < 0.3] = 0.0
        scores[torch.rand(batch, vocab, generator=g) < 0.3] = -0.0
    elif kind == 3:
        scores[0, int(ids[0, -1])] = math.nan
        scores = (scores * 2).round() / 2
    return ids, scores


@pytest.mark.parametrize("processor", [
    lp.RepetitionPenaltyLogitsProcessor(1.3), lp.RepetitionPenaltyLogitsProcessor(0.7),
    lp.RepetitionPenaltyLogitsProcessor(1.2, prompt_ignore_length=5),
    lp.NoRepeatNGramLogitsProcessor(1), lp.NoRepeatNGramLogitsProcessor(2), lp.NoRepeatNGramLogitsProcessor(3),
    lp.NoRepeatNGramLogitsProcessor(4), lp.TemperatureLogitsWarper(0.7), lp.TemperatureLogitsWarper(1.3),
    lp.TemperatureLogitsWarper(2.5),
], ids=lambda p: f"{type(p).__name__}-{getattr(p, 'penalty', getattr(p, 'ngram_size', getattr(p, 'temperature', '')))}")
def test_in_place_is_hf_s_processor_bit_for_bit(processor):
    written = 0
    for seed in range(120):
        ids, scores = _case(seed)
        expected = processor(ids, scores)
        ours = scores.clone()
        got = chain_.run([processor], ids, ours, owned=True)
        assert torch.equal(_bits(got), _bits(expected)), seed
        written += got.data_ptr() == ours.data_ptr()
    assert written > 100, "design: the in-place route decides almost every case"


def test_ids_past_the_scores_are_left_to_hf_s_processor():
    # A vocabulary larger than the scores: HF ignores those ids through a padding column.
    ids, scores = torch.tensor([[5, 299, 120]]), torch.randn(1, 200, generator=torch.Generator().manual_seed(0))
    for processor in (lp.RepetitionPenaltyLogitsProcessor(1.3), lp.NoRepeatNGramLogitsProcessor(2)):
        ours = scores.clone()
        assert torch.equal(chain_.run([processor], ids, ours, owned=True), processor(ids, scores))
    assert chain_.repetition_penalty_(lp.RepetitionPenaltyLogitsProcessor(1.3), ids, scores.clone()) is None
    padded = lp.RepetitionPenaltyLogitsProcessor(1.3, prompt_ignore_length=torch.tensor([1]))
    assert chain_.repetition_penalty_(padded, ids, scores.clone()) is None  # a per-row prompt length: HF's


def test_scores_not_owned_are_never_written():
    ids, scores = _case(4)
    before = scores.clone()
    chain = [lp.RepetitionPenaltyLogitsProcessor(1.3), lp.NoRepeatNGramLogitsProcessor(2)]
    out = chain_.run(chain, ids, scores, owned=False)
    assert torch.equal(_bits(scores), _bits(before))
    # The first processor's fresh result is owned: the second one writes into it, not into the input.
    assert torch.equal(_bits(out), _bits(lp.LogitsProcessorList(chain)(ids, before)))


def test_numpy_argmax_is_torch_s():
    assert chain_.argmax_agrees()
    g = torch.Generator().manual_seed(3)
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 2.0, 2.0])
    for seed in range(50):
        # Large enough for numpy's route (and a few small ones for torch's).
        width = 2100 + seed if seed % 5 else 50 + seed
        scores = special[torch.randint(0, 7, (4, width), generator=g)] if seed % 2 else torch.randn(4, width)
        scores = scores[:, 1:] if seed % 3 == 0 else scores  # strided rows
        tokens, invalid = chain_.argmax(scores)
        assert torch.equal(tokens, scores.argmax(dim=-1)), seed
        assert bool(invalid) == bool(scores.isnan().any()), seed
