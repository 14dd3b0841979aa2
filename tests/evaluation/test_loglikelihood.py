"""`loglikelihood` and `loglikelihood_rolling` against lm-evaluation-harness itself: the same numbers as
``HFLM(pretrained=model, tokenizer=..., logits_cache=False)`` on tiny transformers models and byte-level BPE
tokenizers trained here, with the model and the tokenizer left as they were."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from tiny import CORPUS, tiny_gpt2, tiny_llama

from lightning_gen import generate, loglikelihood
from lightning_gen.evaluation.encoding import RequestEncoder
from lightning_gen.evaluation.loglikelihood import loglikelihood_rolling

_WORDS = " ".join(CORPUS[:40]).split()


def _phrase(rng: random.Random, low: int, high: int) -> str:
    start = rng.randrange(len(_WORDS) - high)
    return " ".join(_WORDS[start:start + rng.randint(low, high)])


def _greedy_requests(model, tokenizer, count: int) -> list[tuple[str, str]]:
    """Requests whose continuation is the model's own greedy one (decoded, and encoded back to the same ids)."""
    encoder, rng, found = RequestEncoder(tokenizer), random.Random(1), []
    for _ in range(60):
        context = _phrase(rng, 2, 6)
        ids = encoder.encode(context)
        new = generate(model, torch.tensor([ids]), max_new_tokens=rng.choice([1, 2]), do_sample=False)[0, len(ids):]
        continuation = tokenizer.decode(new)
        if encoder.pair(context, continuation) == (ids, new.tolist()):
            found.append((context, continuation))
    assert len(found) >= count, "too few greedy continuations survive decoding and encoding again"
    return found[:count]


def _requests(model, tokenizer) -> list[tuple[str, str]]:
    """Every case lm-eval treats specially, and questions whose choices share their context."""
    rng = random.Random(0)
    requests = []
    for _ in range(6):  # multiple choice: one context, four continuations of several tokens
        context = _phrase(rng, 3, 12)
        requests += [(context, " " + _phrase(rng, 1, 4)) for _ in range(4)]
    for _ in range(3):  # one-token choices: every choice's input is the same, one row serves them all
        context = _phrase(rng, 3, 8)
        requests += [(context, f" {letter}") for letter in "ABCD"]
    requests += [
        ("The for statement ", "is used to iterate"),  # trailing spaces move to the continuation
        ("Lists are\n", " mutable sequences"),
        ("", "Hello world"),  # an empty context: scored after the prefix token
        (" ".join(_WORDS[:80]), " and the rest"),  # longer than the 64-token context: cut from the left
        ("x", "y"),
        ("x", "yz"),  # shares `context + continuation[:-1]` with ("x", "y"): lm-eval's cache misreads one of them
    ]
    return requests + _greedy_requests(model, tokenizer, 6)


def _lm_eval(model, tokenizer, requests, method="loglikelihood"):
    lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), logits_cache=False, device="cpu", batch_size=4)
    instances = [Instance(request_type=method, doc={}, arguments=r if method == "loglikelihood" else (r,), idx=i)
                 for i, r in enumerate(requests)]
    return getattr(lm, method)(instances, disable_tqdm=True)


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
@pytest.mark.parametrize("tokenizer_name", ["bpe", "bpe_bos"])
def test_loglikelihood_equals_lm_eval_hflm_without_its_logits_cache(architecture, tokenizer_name, request):
    tokenizer = request.getfixturevalue(tokenizer_name)
    model = (tiny_gpt2 if architecture == "gpt2" else tiny_llama)(len(tokenizer))
    requests = _requests(model, tokenizer)
    expected = _lm_eval(model, tokenizer, requests)
    for options in ({}, {"batch_size": 1}, {"batch_size": 7}):
        ours = loglikelihood(model, requests, tokenizer=tokenizer, **options)
        assert [g for _, g in ours] == [g for _, g in expected]
        assert [ll for ll, _ in ours] == pytest.approx([ll for ll, _ in expected], abs=1e-4)
    assert sum(g for _, g in expected) >= 6  # the greedy cases are there, and seen as greedy


def test_loglikelihood_rolling_equals_lm_eval(bpe_bos):
    model = tiny_gpt2(len(bpe_bos))
    texts = [CORPUS[0][:400], CORPUS[1][:90], "short", CORPUS[2][:1000]]  # one window, several, and many
    expected = _lm_eval(model, bpe_bos, texts, method="loglikelihood_rolling")
    assert loglikelihood_rolling(model, texts, tokenizer=bpe_bos) == pytest.approx(expected, rel=1e-5)


def test_model_and_tokenizer_are_left_as_they_were(bpe):
    tokenizer = copy.deepcopy(bpe)
    model = tiny_gpt2(len(tokenizer)).train()
    model.transformer.h[1].eval()  # mixed modes: each module gets its own back
    modes = {name: module.training for name, module in model.named_modules()}
    state = {name: value.clone() for name, value in model.state_dict().items()}
    buffers = dict(model.named_buffers())
    loglikelihood(model, [("The for", " statement"), ("The for", " loop"), ("", "Hi")], tokenizer=tokenizer)
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert list(model.state_dict()) == list(state)
    assert all(torch.equal(model.state_dict()[name], value) for name, value in state.items())
    assert dict(model.named_buffers()).keys() == buffers.keys()
    assert all(p.grad is None for p in model.parameters())
    assert (tokenizer.pad_token, tokenizer.padding_side, len(tokenizer)) == (None, "right", len(bpe))


def test_requests_must_be_pairs_of_strings(bpe):
    model = tiny_gpt2(len(bpe))
    with pytest.raises(TypeError, match=r"`requests\[1\]` must be a pair of strings"):
        loglikelihood(model, [("a", "b"), ("a",)], tokenizer=bpe)
    with pytest.raises(ValueError, match=r"`requests\[0\]` needs at least one context and one continuation token"):
        loglikelihood(model, [("a", "")], tokenizer=bpe)


def test_a_custom_tokenizers_bos_is_the_prefix_token_whether_or_not_it_was_loaded_first():
    """An empty context is scored after BOS (else the first EOS), also when the tokenizer reaches the encoder already
    loaded, as `TaskMonitor` hands it over."""
    from lightning_gen.text.tokenization import load_tokenizer

    class Chars:
        bos_token_id, eos_token_id = 1, [2, 3]

        def encode(self, text):
            return [ord(c) for c in text]

        def decode(self, ids):
            return "".join(map(chr, ids))

    class NoBos(Chars):
        bos_token_id = True  # not an id

    assert RequestEncoder(Chars()).pair("", "ok") == ([1], [111, 107])
    assert RequestEncoder(load_tokenizer(Chars())).pair("", "ok") == ([1], [111, 107])
    assert RequestEncoder(load_tokenizer(NoBos())).pair("", "ok") == ([2], [111, 107])
