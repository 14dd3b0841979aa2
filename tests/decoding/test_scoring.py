"""Teacher-forced log-probabilities, checked against values worked out by hand on tiny tables."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_gen.decoding.scoring import token_logprobs
from lightning_gen.text.quality import perplexity

# ----------------------------------------------------------------- log-probabilities
# A bigram "model" whose next-token distribution depends only on the current token, so every log-prob is a
# table entry: after 0 -> [.5, .25, .25], after 1 -> [.1, .8, .1], after 2 -> [.2, .2, .6].
TABLE = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])


class Bigram(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(TABLE.log())  # log-probs are valid logits: log_softmax leaves them unchanged
        self.seen: list[list[int]] = []
        self.grad_enabled: list[bool] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.seen.append(ids[0].tolist())
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.logits[ids]  # (B, T, V)


def test_token_logprobs_are_teacher_forced_table_entries():
    model = Bigram()
    scores = token_logprobs(model, [0, 2], [2, 1, 1])
    # p(2|2) = .6, p(1|2) = .2, p(1|1) = .8
    assert scores.tolist() == pytest.approx([math.log(0.6), math.log(0.2), math.log(0.8)])
    assert scores.dtype == torch.float32
    assert model.seen == [[0, 2, 2, 1]]  # the last target is never fed
    assert model.grad_enabled == [False]


def test_a_mean_log_prob_gives_the_perplexity_per_token():
    # [0] -> 1, 1: (log .25 + log .8) / 2 = log(.2) / 2, so the perplexity is exp(-log(.2) / 2) = sqrt(5)
    assert perplexity(float(token_logprobs(Bigram(), [0], [1, 1]).mean())) == pytest.approx(math.sqrt(5))



def test_long_sequences_are_cropped_from_the_left():
    model = Bigram()
    # context 3: [0, 0, 0, 1, 2] -> window of the last 3 + 1 tokens [0, 0, 1, 2] (the last is never fed), so the
    # model sees [0, 0, 1] and both targets are scored: p(1|0) = .25, p(2|1) = .1
    scores = token_logprobs(model, [0, 0, 0], [1, 2], context_length=3)
    assert model.seen[-1] == [0, 0, 1]
    assert scores.tolist() == pytest.approx([math.log(0.25), math.log(0.1)])
    # context 1: window [1, 2], input [1]: only the last target has a token before it
    scores = token_logprobs(model, [0, 0, 0], [1, 2], context_length=1)
    assert model.seen[-1] == [1]
    assert scores.tolist() == pytest.approx([math.log(0.1)])
    with pytest.raises(ValueError, match=r"`context_length` must be a positive integer or None, got 0"):
        token_logprobs(model, [0], [1], context_length=0)


def test_a_model_returning_only_the_last_position_is_refused_clearly():
    def last_only(ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(1, 1, 3)  # (B, 1, V): what many generation-only forwards return

    with pytest.raises(ValueError, match=r"full-sequence logits \(1, T, V\) with T=2.*shape \(1, 1, 3\)"):
        token_logprobs(last_only, [0, 1], [2])
    with pytest.raises(ValueError, match="full-sequence logits"):
        token_logprobs(lambda ids: torch.zeros(1, 3), [0, 1], [2])  # (B, V)
    with pytest.raises(ValueError, match=r"must have shape \(1, 2, V\), got \(1, 3, 3\)"):
        token_logprobs(lambda ids: torch.zeros(1, 3, 3), [0, 1], [2])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="`prompt_ids` must hold at least one token"):
        token_logprobs(Bigram(), [], [1])
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 3\).*\[7\]"):
        token_logprobs(Bigram(), [0], [7])
    with pytest.raises(TypeError, match="got str"):
        token_logprobs(lambda ids: "logits", [0], [1])


def test_half_precision_logits_are_scored_in_float32():
    # bf16 logits [0, 0, 0]: log_softmax in float32 gives exactly -log 3
    scores = token_logprobs(lambda ids: torch.zeros(1, ids.shape[1], 3, dtype=torch.bfloat16), [0], [1, 2])
    assert scores.dtype == torch.float32
    assert scores.tolist() == pytest.approx([-math.log(3)] * 2, abs=1e-7)


def test_hf_model_output_with_logits_matches_a_manual_computation(tiny_gpt2):
    prompt, completion = [5, 6, 7], [8, 9]
    scores = token_logprobs(tiny_gpt2, prompt, completion)
    with torch.no_grad():
        logits = tiny_gpt2(torch.tensor([prompt + completion])).logits[0]  # (T, V)
    expected = [torch.log_softmax(logits[t - 1].float(), -1)[token] for t, token in ((3, 8), (4, 9))]
    assert scores.tolist() == pytest.approx([float(e) for e in expected], abs=1e-5)
