"""Prompts taken from the validation data: the first tokens of fixed examples, the true continuation as reference."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from lightning_gen.prompts import Prompt
from lightning_gen.sampling import EncodedPrompts
from lightning_gen.tokenization import LoadedTokenizer

__all__ = ["prompts_from_batches"]


def _token_rows(batch: Any) -> torch.Tensor:
    """The `(B, T)` token ids of a batch: the tensor itself, the first item of a tuple, or ``input_ids``."""
    if isinstance(batch, dict):
        batch = batch.get("input_ids")
    elif isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.dim() != 2 or batch.is_floating_point():
        raise ValueError(
            "`prompts_from_data` needs validation batches of token ids: a (B, T) integer tensor, a tuple whose first "
            f"item is one, or a dict with 'input_ids'; got {type(batch).__name__}"
        )
    return batch


def prompts_from_batches(
    batches: Iterable[Any], tokenizer: LoadedTokenizer, *, count: int, prompt_tokens: int, reference_tokens: int
) -> EncodedPrompts:
    """The first ``count`` examples of ``batches``: ``prompt_tokens`` tokens as prompt, the next
    ``reference_tokens`` as reference. Deterministic as long as the dataloader's order is (validation loaders
    are not shuffled); chosen once, so every round shows the same examples.

    Raises:
        ValueError: The batches hold fewer than ``count`` examples, or examples shorter than the prompt plus one
            reference token, or no token ids.
    """
    prompts, ids, references = [], [], []
    for batch in batches:
        for row in _token_rows(batch).tolist():
            if len(row) < prompt_tokens + 1:
                raise ValueError(
                    f"`data_prompt_tokens`={prompt_tokens} needs validation examples of more than {prompt_tokens} "
                    f"tokens, got one of {len(row)}"
                )
            prompt, reference = row[:prompt_tokens], row[prompt_tokens:prompt_tokens + reference_tokens]
            prompts.append(Prompt(tokenizer.decode(prompt), tokenizer.decode(reference)))
            ids.append(prompt)
            references.append(reference)
            if len(ids) == count:
                return EncodedPrompts(prompts, ids, [], references)
    raise ValueError(f"`prompts_from_data`={count} asks for more examples than the validation data holds ({len(ids)})")
