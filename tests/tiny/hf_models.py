"""Tiny transformers models built from configs with random weights (nothing is downloaded), each from a seed that
leaves the global RNG as it was."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from .seeding import seeded
from .tokenization import BOS_ID, EOS_ID, PAD_ID

NO_SPECIAL_IDS = {"pad_token_id": None, "eos_token_id": None, "bos_token_id": None}
SPECIAL_IDS = {"pad_token_id": PAD_ID, "eos_token_id": EOS_ID, "bos_token_id": BOS_ID}  # `hf_char_tokenizer`'s


def tiny_gpt2(vocab_size: int, *, n_layer: int = 2, n_embd: int = 32, n_positions: int = 64,
              initializer_range: float = 0.3, seed: int | None = 0, **config: Any) -> GPT2LMHeadModel:
    """A GPT-2 of 2 layers and 2 heads, 32 wide, in eval mode; ``config``: other `GPT2Config` fields (no pad, EOS or
    BOS id unless given, e.g. ``**SPECIAL_IDS``); ``seed=None``: its weights drawn from the global RNG, which they
    advance."""
    with seeded(seed) if seed is not None else nullcontext():
        return GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_head=2, n_embd=n_embd, vocab_size=vocab_size,
                                          n_positions=n_positions, initializer_range=initializer_range,
                                          **{**NO_SPECIAL_IDS, **config})).eval()


def tiny_llama(vocab_size: int, *, initializer_range: float = 0.3, seed: int = 0, **config: Any) -> LlamaForCausalLM:
    """A Llama of 2 layers, 32 wide, grouped-query attention (4 heads, 2 for keys and values), 64 positions, in eval
    mode; ``config``: other `LlamaConfig` fields (no pad, EOS or BOS id unless given, e.g. ``**SPECIAL_IDS``)."""
    with seeded(seed):
        return LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab_size,
                                            max_position_embeddings=64, initializer_range=initializer_range,
                                            **{**NO_SPECIAL_IDS, **config})).eval()
