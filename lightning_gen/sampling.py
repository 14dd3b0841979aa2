"""One sampling round: tokenized prompts in, decoded samples out. Pure: no Lightning here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from lightning_gen.adapters import ModelAdapter
from lightning_gen.batching import generate_completions
from lightning_gen.prompts import Prompt
from lightning_gen.rendering import Sample
from lightning_gen.tokenization import LoadedTokenizer

__all__ = ["EncodedPrompts", "encode_prompts", "sample_round"]


@dataclass(frozen=True)
class EncodedPrompts:
    """Prompts with their token ids, ready for every round.

    Attributes:
        prompts: The prompts.
        ids: Token ids of each prompt, cropped from the left to fit the context.
        cropped: Indices of the prompts that were cropped.
    """

    prompts: list[Prompt]
    ids: list[list[int]]
    cropped: list[int]


def encode_prompts(
    prompts: Sequence[Prompt], tokenizer: LoadedTokenizer, *, vocab_size: int | None, max_prompt_tokens: int | None
) -> EncodedPrompts:
    """Tokenize prompts once, check every id fits the vocabulary, crop long prompts from the left.

    Raises:
        ValueError: The tokenizer fails on a prompt, a prompt encodes to no tokens, or to ids outside ``[0, vocab_size)``.
    """
    ids, cropped = [], []
    for i, prompt in enumerate(prompts):
        try:
            tokens = tokenizer.encode(prompt.text)
        except Exception as err:
            raise ValueError(
                f"`prompts[{i}]` {prompt.text!r} could not be encoded by the tokenizer: {type(err).__name__}: {err}"
            ) from err
        if not tokens:
            raise ValueError(f"`prompts[{i}]` {prompt.text!r} encodes to no tokens")
        bad = [t for t in tokens if t < 0 or (vocab_size is not None and t >= vocab_size)]
        if bad:
            raise ValueError(
                f"`prompts[{i}]` {prompt.text!r} encodes to ids {bad[:5]} outside the model's vocabulary "
                f"[0, {vocab_size}); does the tokenizer match the model?"
            )
        if max_prompt_tokens is not None and len(tokens) > max_prompt_tokens:
            tokens = tokens[-max_prompt_tokens:]
            cropped.append(i)
        ids.append(tokens)
    return EncodedPrompts(list(prompts), ids, cropped)


def sample_round(
    model: nn.Module,
    encoded: EncodedPrompts,
    tokenizer: LoadedTokenizer,
    generation_config: GenerationConfig,
    *,
    seed: int,
    batch_size: int | None = None,
    adapter: ModelAdapter | None = None,
    logits_processors: Sequence[Any] | None = None,
    context_length: int | None = None,
) -> list[Sample]:
    """Complete every prompt with the same noise as every other round, and decode the results.

    A fresh generator seeded with ``seed`` on the model's device makes rounds comparable across training
    steps and leaves every other random stream alone.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    generator = torch.Generator(device=device).manual_seed(seed)
    completions = generate_completions(
        model, encoded.ids, generation_config,
        batch_size=batch_size, generator=generator, adapter=adapter,
        logits_processor=list(logits_processors or []), context_length=context_length,
        tokenizer=tokenizer.hf_tokenizer if generation_config.stop_strings else None,
    )
    copies = len(completions) // len(encoded.ids)
    samples = []
    for n, completion in enumerate(completions):
        i = n // copies
        samples.append(Sample(
            prompt=tokenizer.decode(encoded.ids[i]),
            completion=tokenizer.decode(completion),
            prompt_ids=encoded.ids[i],
            completion_ids=completion,
            reference=encoded.prompts[i].reference,
        ))
    return samples
