"""The decode loop's shortcuts (issue 6): they change the work per token, never the tokens.

* With the maximum length as the only stopping criterion, the loop counts instead of evaluating criteria.
* KV-cache adapters pass each step's ``input_pos`` as a slice of one ``arange``, not a new tensor per token.
* A user's `MaxLengthCriteria` beyond ``max_length`` sizes the token buffer, as HF lets it run that far.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import MaxLengthCriteria, StoppingCriteria, StoppingCriteriaList

from lightning_gen import generate
from lightning_gen.decoding.generation import _stops_only_at

V = 11


class Recorder(nn.Module):
    """A litgpt-protocol bigram model that records every ``input_pos`` it is given."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(V, V)
        self.positions: list[list[int]] = []
        self.cache_sizes: list[int] = []

    def set_kv_cache(self, batch_size: int, max_seq_length: int, device=None) -> None:
        self.cache_sizes.append(max_seq_length)

    def clear_kv_cache(self) -> None:
        pass

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        self.positions.append(input_pos.tolist())
        return self.table(idx)  # (B, T, V)


def test_stops_only_at_recognises_a_lone_max_length():
    assert _stops_only_at(StoppingCriteriaList([MaxLengthCriteria(max_length=9)]), 9)
    assert not _stops_only_at(StoppingCriteriaList([MaxLengthCriteria(max_length=9)]), 10)
    # Its "exceeded max_position_embeddings" warning could fire: evaluate it as HF does.
    assert not _stops_only_at(StoppingCriteriaList([MaxLengthCriteria(max_length=9, max_position_embeddings=4)]), 9)
    assert _stops_only_at(StoppingCriteriaList([MaxLengthCriteria(max_length=9, max_position_embeddings=8)]), 9)

    class Longer(MaxLengthCriteria):
        pass

    assert not _stops_only_at(StoppingCriteriaList([Longer(max_length=9)]), 9)


def test_kv_cache_positions_are_consecutive_across_the_regrowth():
    model = Recorder()
    prompt = torch.randint(0, V, (2, 250), generator=torch.Generator().manual_seed(0))
    out = generate(model, prompt, max_new_tokens=20, adapter="litgpt", do_sample=True,
                   generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 270)
    assert model.positions[0] == list(range(250))
    assert model.positions[1:] == [[p] for p in range(250, 269)]


def test_a_user_max_length_beyond_max_new_tokens_runs_that_far():
    model = Recorder()
    prompt = torch.randint(0, V, (2, 4), generator=torch.Generator().manual_seed(0))
    out = generate(model, prompt, max_new_tokens=3, adapter="litgpt", stopping_criteria=[MaxLengthCriteria(12)])
    assert out.shape == (2, 12) and model.cache_sizes == [12]


class StopAfter(StoppingCriteria):
    """Stops every row once the sequence reaches ``length``: an extra criterion, so the loop evaluates them."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.calls = 0

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        self.calls += 1
        return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.length, dtype=torch.bool)


def test_counted_and_evaluated_stopping_give_the_same_tokens():
    prompt = torch.randint(0, V, (3, 5), generator=torch.Generator().manual_seed(1))
    options = dict(max_new_tokens=8, adapter="litgpt", do_sample=True, top_k=4)
    counted = generate(Recorder(), prompt, generator=torch.Generator().manual_seed(5), **options)
    stop = StopAfter(100)  # never fires: only forces the evaluated path
    evaluated = generate(Recorder(), prompt, generator=torch.Generator().manual_seed(5), stopping_criteria=[stop],
                         **options)
    assert torch.equal(counted, evaluated) and stop.calls == 8
