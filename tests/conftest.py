"""Shared fixtures: tiny, seeded Hugging Face causal LMs and a matching char-level tokenizer.

The models are built from configs with random weights (never downloaded). ``initializer_range=0.5``
makes their next-token distributions peaked enough (max prob ~0.25-0.6, entropy ~1.3-2.8 nats over
96 tokens) that greedy decoding varies and every sampling filter (top-k/p, min-p, typical, epsilon,
eta) actually removes tokens; with HF's default 0.02 the distributions are almost uniform and GPT-2
greedily repeats its last token forever.
"""

from __future__ import annotations

import string

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread: OpenMP threads spinning on a busy 2-core machine cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


VOCAB_SIZE = 96
PAD_ID, EOS_ID, BOS_ID = 0, 1, 2
# Prompts draw from [FIRST_REGULAR_ID, VOCAB_SIZE) so they never contain pad: HF infers an attention
# mask from pad ids found in the prompt, which a plain model cannot mirror.
FIRST_REGULAR_ID = 3

_SPECIAL_TOKENS = ["<pad>", "</s>", "<s>"]
_CHARS = list(string.ascii_lowercase + string.ascii_uppercase + string.digits + " ")
# Multi-character tokens, so stop strings can be completed by tokens that overlap them.
_BIGRAMS = [
    "th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of",
    "ed", "is", "it", "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le",
]  # fmt: skip


def _build_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=32,
        vocab_size=VOCAB_SIZE,
        n_positions=64,
        initializer_range=0.5,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        bos_token_id=BOS_ID,
    )
    return GPT2LMHeadModel(config).eval()


def _build_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=64,
        initializer_range=0.5,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        bos_token_id=BOS_ID,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_gpt2() -> GPT2LMHeadModel:
    """2-layer, 32-wide GPT-2 over 96 tokens; generation_config has pad=0, eos=1, bos=2."""
    return _build_gpt2()


@pytest.fixture(scope="session")
def tiny_llama() -> LlamaForCausalLM:
    """2-layer, 32-wide Llama (GQA 4/2 heads) over 96 tokens; generation_config has pad=0, eos=1, bos=2."""
    return _build_llama()


@pytest.fixture(scope="session")
def char_tokenizer() -> PreTrainedTokenizerFast:
    """A 96-token tokenizer matching the tiny models' vocab: 3 specials, 63 single chars, 30 bigrams.

    Text is split into single characters (so bigram tokens are never produced by encoding, only by the
    model) and ids are decoded by concatenation.
    """
    vocab = {token: i for i, token in enumerate(_SPECIAL_TOKENS + _CHARS + _BIGRAMS)}
    assert len(vocab) == VOCAB_SIZE
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", bos_token="<s>")
