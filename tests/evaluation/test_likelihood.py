"""`loglikelihood_tokens` (lightning_gen.decoding.likelihood) on model code as users write it: every request equals
a brute-force forward of its own window, whatever the protocol; many requests share each forward; the model is left
as it was."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
import torch.nn.functional as F
from tiny import (
    GPTConfig,
    GptFast,
    NanoGPT,
    TinyCacheLM,
    TinyLM,
    TorchtuneDecoder,
    init_weights,
    tiny_gpt2,
    tiny_gpt_fast,
)
from torch import nn

from lightning_gen.decoding.likelihood import context_window, loglikelihood_tokens
from lightning_gen.decoding.scoring import LastPositionOnlyError

BLOCK = 32


def _nanogpt():
    return init_weights(NanoGPT(GPTConfig(block_size=BLOCK)), seed=1).eval()  # vocabulary padded to 128


def _gpt_fast():
    return tiny_gpt_fast(block_size=BLOCK, seed=2).eval()


def _torchtune():
    return init_weights(TorchtuneDecoder(max_seq_len=BLOCK), seed=3).eval()


def _litgpt_style():
    torch.manual_seed(4)
    return TinyCacheLM(block_size=BLOCK).eval()


def _plain():
    torch.manual_seed(5)
    return TinyLM(block_size=BLOCK).eval()  # dropout 0.1: a forward outside eval mode would be random


def _all_logits(model: nn.Module, ids: list[int]) -> torch.Tensor:
    """Every position's logits `(T, V)` of one sequence, the way each protocol's own code gets them."""
    x = torch.tensor([ids])
    with torch.no_grad():
        if isinstance(model, NanoGPT):
            return model(x, targets=x)[0][0]
        if isinstance(model, GptFast):
            model = copy.deepcopy(model)
            model.setup_caches(max_batch_size=1, max_seq_length=len(ids))
            return model(x, torch.arange(len(ids)))[0]
        out = model(x)
        return (out.logits if hasattr(out, "logits") else out)[0]


def _brute_force(model, requests, context_length=BLOCK):
    """One forward per request: its window's logits, log-softmax, the continuation's tokens."""
    expected = []
    for context, continuation in requests:
        ids, scored = context_window(context, continuation, context_length)
        logits = _all_logits(model, list(ids))[-scored:].double()  # (c, V)
        target = torch.tensor(continuation)
        total = logits.log_softmax(-1).gather(-1, target[:, None]).sum().item()
        expected.append((total, bool((logits.argmax(-1) == target).all())))
    return expected


def assert_scores(actual, expected, tolerance=1e-4):
    assert [greedy for _, greedy in actual] == [greedy for _, greedy in expected]
    assert [total for total, _ in actual] == pytest.approx([total for total, _ in expected], abs=tolerance)


def _requests(model, vocab: int) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(0)
    tokens = lambda n: [rng.randrange(vocab) for _ in range(n)]  # noqa: E731
    requests = []
    for _ in range(5):  # choices sharing a context
        context = tokens(rng.randint(1, 20))
        requests += [(context, tokens(rng.randint(1, 6))) for _ in range(4)]
    for _ in range(3):  # one-token choices: one row for all four
        context = tokens(rng.randint(2, 10))
        requests += [(context, [choice]) for choice in rng.sample(range(vocab), 4)]
    requests += [(tokens(40), tokens(3)), (tokens(BLOCK + 5), tokens(BLOCK))]  # cut from the left
    for _ in range(4):  # continuations the model would choose itself
        context = tokens(rng.randint(1, 12))
        greedy = []
        for _ in range(rng.randint(1, 3)):
            greedy.append(int(_all_logits(model, context + greedy)[-1].argmax()))
        requests.append((context, greedy))
    return requests


PROTOCOLS = {"nanogpt": (_nanogpt, 65), "gpt-fast": (_gpt_fast, 65), "torchtune": (_torchtune, 65),
             "litgpt-style": (_litgpt_style, 37), "plain": (_plain, 37)}


@pytest.mark.parametrize("kind", list(PROTOCOLS))
def test_every_request_equals_its_own_forward(kind):
    build, vocab = PROTOCOLS[kind]
    model = build()
    requests = _requests(model, vocab)
    expected = _brute_force(model, requests)
    for batch_size in (None, 1, 5):
        assert_scores(loglikelihood_tokens(model, requests, batch_size=batch_size), expected)
    assert sum(g for _, g in expected) >= 4


def _counting(model: nn.Module) -> list[tuple[int, ...]]:
    shapes = []
    model.register_forward_hook(lambda module, args, kwargs, out: shapes.append(tuple(
        (args[0] if args else kwargs["input_ids"]).shape)), with_kwargs=True)
    return shapes


def test_many_requests_share_each_forward():
    model = _litgpt_style()
    requests = _requests(model, 37)
    shapes = _counting(model)
    loglikelihood_tokens(model, requests, batch_size=8)
    rows = sum(shape[0] for shape in shapes)
    assert len(shapes) <= math.ceil(rows / 8) + 1 < len(requests) / 4
    # A request whose input is a prefix of another's is read from that one's row (the one-token choices of a question).
    inputs = {context_window(c, t, BLOCK)[0] for c, t in requests}
    assert rows == sum(not any(other[:len(ids)] == ids for other in inputs if other != ids) for ids in inputs) < 30


def test_choices_of_a_transformers_model_share_their_context_in_the_kv_cache():
    model = tiny_gpt2(96)
    rng = random.Random(3)
    requests = [(context, [first] + [rng.randrange(96) for _ in range(rng.randint(1, 4))])
                for context in ([rng.randrange(96) for _ in range(rng.randint(5, 30))] for _ in range(6))
                for first in rng.sample(range(96), 4)]  # no choice's input is a prefix of another's
    # A row read by a request that starts scoring earlier than the row's own (the first one): its shared prefix is
    # the shorter one, [5], which it shares with the third row, not [5, 6, 7], which it would share with the fourth.
    extra = [([5, 6], [7, 8, 9]), ([5, 6, 7, 8], [9]), ([5, 30], [31, 32]), ([5, 6, 7, 40], [41, 42])]
    shapes = _counting(model)
    shared = loglikelihood_tokens(model, requests)
    assert [shape[0] for shape in shapes] == [6, 24]  # the six contexts once, then every choice's own tokens
    assert max(shape[1] for shape in shapes[1:]) <= 5
    shapes.clear()
    whole = loglikelihood_tokens(model, requests, share_prefixes=False)
    assert [shape[0] for shape in shapes] == [24]
    assert_scores(shared, whole)
    assert_scores(shared, _brute_force(model, requests, 64))
    assert_scores(loglikelihood_tokens(model, requests + extra), _brute_force(model, requests + extra, 64))


def test_in_lockstep_a_finished_process_keeps_calling_the_model():
    model = _plain()
    shapes = _counting(model)
    votes = []

    def all_finished(done: bool) -> bool:  # another process has two more batches to run
        votes.append(done)
        return votes.count(True) > 2

    requests = [([1, 2, 3], [4, 5]), ([6], [7])]
    assert loglikelihood_tokens(model, requests, all_finished=all_finished) == loglikelihood_tokens(model, requests)
    assert shapes[:3] == [(2, 4), (1, 1), (1, 1)]


def test_a_model_in_training_mode_is_scored_in_eval_mode():
    model = _plain()
    requests = _requests(model, 37)
    expected = _brute_force(model, requests)
    model.train()  # its dropout would change every score
    assert_scores(loglikelihood_tokens(model, requests), expected)
    assert model.training and model.drop.training


def test_model_is_left_as_it_was():
    model = _gpt_fast().train()
    model.layers[0].eval()
    model.setup_caches(max_batch_size=2, max_seq_length=16)  # the user's own caches: never written, kept
    caches = {name: buffer for name, buffer in model.named_buffers()}
    saved = {name: buffer.clone() for name, buffer in caches.items()}
    modes = {name: module.training for name, module in model.named_modules()}
    keys = list(model.state_dict())
    loglikelihood_tokens(model, [([1, 2, 3], [4, 5]), ([1, 2, 3], [6])])
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert list(model.state_dict()) == keys
    assert all(buffer is caches[name] and torch.equal(buffer, saved[name]) for name, buffer in model.named_buffers())
    assert (model.max_batch_size, model.max_seq_length) == (2, 16)


def test_bad_requests_are_refused_naming_the_request():
    model = _plain()
    with pytest.raises(ValueError, match=r"`requests\[1\]` needs at least one context and one continuation token"):
        loglikelihood_tokens(model, [([1], [2]), ([], [2])])
    with pytest.raises(ValueError, match=r"`requests\[0\]` has 40 continuation tokens, more than the context length"):
        loglikelihood_tokens(model, [([1], [2] * 40)])
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 37\)"):
        loglikelihood_tokens(model, [([1], [40])])
    with pytest.raises(TypeError, match=r"`requests\[0\]` must be a pair"):
        loglikelihood_tokens(model, [[1, 2, 3]])


def test_a_model_that_returns_the_last_position_only_cannot_be_scored():
    class LastOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Embedding(8, 8)

        def forward(self, ids):
            return self.table(ids)[:, -1:]  # (B, 1, V)

    with pytest.raises(LastPositionOnlyError, match="logits for every position"):
        loglikelihood_tokens(LastOnly(), [([1, 2], [3, 4])])


def test_half_precision_logits_are_summed_in_float32():
    model = _plain().to(torch.bfloat16)
    [(total, _)] = loglikelihood_tokens(model, [([1, 2, 3], [4, 5, 6])])
    logits = model(torch.tensor([[1, 2, 3, 4, 5]]))[0, -3:].float()
    expected = F.log_softmax(logits, -1).gather(-1, torch.tensor([[4], [5], [6]])).sum().item()
    assert total == pytest.approx(expected, abs=1e-5)
