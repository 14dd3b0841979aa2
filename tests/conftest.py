"""Shared fixtures: tiny, seeded Hugging Face causal LMs and a matching char-level tokenizer (built in `tiny`).

The models are built from configs with random weights (never downloaded). ``initializer_range=0.5``
makes their next-token distributions peaked enough (max prob ~0.25-0.6, entropy ~1.3-2.8 nats over
96 tokens) that greedy decoding varies and every sampling filter (top-k/p, min-p, typical, epsilon,
eta) actually removes tokens; with HF's default 0.02 the distributions are almost uniform and GPT-2
greedily repeats its last token forever.
"""

from __future__ import annotations

import pytest
import torch
from tiny import SPECIAL_IDS, VOCAB_SIZE, hf_char_tokenizer, tiny_gpt2, tiny_llama
from transformers import GPT2LMHeadModel, LlamaForCausalLM, PreTrainedTokenizerFast


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread: OpenMP threads spinning on a busy 2-core machine cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", name="tiny_gpt2")
def _tiny_gpt2() -> GPT2LMHeadModel:
    """2-layer, 32-wide GPT-2 over 96 tokens; generation_config has pad=0, eos=1, bos=2."""
    return tiny_gpt2(VOCAB_SIZE, initializer_range=0.5, **SPECIAL_IDS)


@pytest.fixture(scope="session", name="tiny_llama")
def _tiny_llama() -> LlamaForCausalLM:
    """2-layer, 32-wide Llama (GQA 4/2 heads) over 96 tokens; generation_config has pad=0, eos=1, bos=2."""
    return tiny_llama(VOCAB_SIZE, initializer_range=0.5, **SPECIAL_IDS)


@pytest.fixture(scope="session")
def char_tokenizer() -> PreTrainedTokenizerFast:
    """A 96-token tokenizer matching the tiny models' vocab: 3 specials, 63 single chars, 30 bigrams."""
    return hf_char_tokenizer()
