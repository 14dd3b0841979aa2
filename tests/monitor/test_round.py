"""One round's samples carry what the per-token views need: each token's text and log-prob, and the EOS."""

from __future__ import annotations

import pytest
import torch
from tiny import VOCAB, CharTokenizer, TinyLM, plan_for

from lightning_gen.monitor.tokenized_prompts import encode_prompts
from lightning_gen.monitor.round import sample_round
from lightning_gen.text.samples import Prompt
from lightning_gen.text.tokenization import load_tokenizer

EOS = VOCAB.index("\n")


def test_a_scored_round_gives_each_tokens_text_and_log_prob_and_says_which_ended_with_eos():
    torch.manual_seed(0)
    model = TinyLM(dropout=0.0, block_size=48)
    tokenizer = load_tokenizer(CharTokenizer(eos=True))
    encoded = encode_prompts([Prompt(p) for p in ("ab", "hello", "x", "yz", "c d", "e.")], tokenizer, max_prompt_tokens=None)
    config = dict(max_new_tokens=30, do_sample=True, eos_token_id=EOS, pad_token_id=EOS)
    samples = [s for _, s in sample_round(model, encoded, tokenizer, plan_for(model, tokenizer, config, score=True),
                                          seed=0)]
    ended = [s.eos for s in samples]
    assert ended == [bool(s.completion_ids) and s.completion_ids[-1] == EOS for s in samples]
    assert True in ended and False in ended  # both kinds occur with this seed, so the flag is tested both ways
    for s in samples:
        assert s.tokens == [VOCAB[i] for i in s.completion_ids]
        assert "".join(s.tokens) == s.completion
        assert len(s.token_logprobs) == len(s.completion_ids)
    unscored = [s for _, s in sample_round(model, encoded, tokenizer, plan_for(model, tokenizer, config), seed=0)]
    assert all(s.tokens is None and s.token_logprobs is None for s in unscored)


def test_copies_of_a_prompt_share_its_reference_loss_computed_by_one_forward():
    torch.manual_seed(0)
    model = TinyLM(dropout=0.0, block_size=48)
    tokenizer = load_tokenizer(CharTokenizer())
    encoded = encode_prompts([Prompt("hello", reference=" world, ok")], tokenizer, max_prompt_tokens=None)
    config = dict(max_new_tokens=6, do_sample=True, num_return_sequences=4)
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(args[0].shape))
    samples = [s for _, s in sample_round(model, encoded, tokenizer, plan_for(model, tokenizer, config, score=True),
                                          seed=0)]
    losses = {s.metrics["reference_loss"] for s in samples}
    assert len(samples) == 4 and len(losses) == 1
    teacher_forced = len("hello world, ok") - 1  # the samples' own scoring forwards are 5 + 6 - 1 long
    assert sum(shape == (1, teacher_forced) for shape in calls) == 1  # one forward for four copies
    # the mean cross-entropy of the reference's 9 tokens, each predicted from all the text before it
    ids = torch.tensor([[VOCAB.index(c) for c in "hello world, ok"]])
    with torch.no_grad():
        logprobs = torch.log_softmax(model.eval()(ids)[0, 4:-1], dim=-1)
    expected = -logprobs.gather(-1, ids[0, 5:, None]).mean().item()
    assert losses.pop() == pytest.approx(expected, rel=1e-6)
