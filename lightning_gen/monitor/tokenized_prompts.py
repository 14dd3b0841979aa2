"""The prompts of every round, tokenized once at `setup`: the user's prompts, and examples from the validation data
(their first tokens as the prompt, the true continuation as the reference)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from lightning_gen.text.samples import EncodedPrompts, Prompt
from lightning_gen.text.tokenization import LoadedTokenizer

__all__ = ["crop_prompts", "encode_prompts", "prompt_budget", "prompts_from_batches", "validation_prompts"]


def encode_prompts(
    prompts: Sequence[Prompt], tokenizer: LoadedTokenizer, *, max_prompt_tokens: int | None
) -> EncodedPrompts:
    """Tokenize prompts once and crop long ones from the left (the probe checks their ids against the vocabulary).

    Raises:
        ValueError: The tokenizer fails on a prompt, or a prompt encodes to no tokens.
    """
    ids = []
    for i, prompt in enumerate(prompts):
        try:
            tokens = tokenizer.encode(prompt.text)
        except Exception as err:
            raise ValueError(
                f"`prompts[{i}]` {prompt.text!r} could not be encoded by the tokenizer: {type(err).__name__}: {err}"
            ) from err
        if not tokens:
            raise ValueError(f"`prompts[{i}]` {prompt.text!r} encodes to no tokens")
        ids.append(tokens)
    references = [tokenizer.encode(p.reference) if p.reference else None for p in prompts]
    return crop_prompts(EncodedPrompts(list(prompts), ids, [], references), max_prompt_tokens)


def crop_prompts(encoded: EncodedPrompts, max_prompt_tokens: int | None) -> EncodedPrompts:
    """The prompts cropped from the left to ``max_prompt_tokens`` (None: as they are); `EncodedPrompts.cropped`
    lists every prompt cropped so far.

    Example::

        >>> from lightning_gen.text.samples import Prompt
        >>> crop_prompts(EncodedPrompts([Prompt("abc"), Prompt("d")], [[1, 2, 3], [4]], [], [None, None]), 2).ids
        [[2, 3], [4]]
    """
    if max_prompt_tokens is None:
        return encoded
    cropped = sorted(set(encoded.cropped) | {i for i, ids in enumerate(encoded.ids) if len(ids) > max_prompt_tokens})
    ids = [tokens[-max_prompt_tokens:] for tokens in encoded.ids]
    return EncodedPrompts(encoded.prompts, ids, cropped, encoded.references)


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


def prompt_budget(context: int | None, config: Any, *, needs_room: bool) -> int | None:
    """The most prompt tokens that fit the model's ``context`` (None: no limit known).

    A cache model needs room for the new tokens too (``needs_room``); a plain one crops instead. Without
    ``max_new_tokens`` only ``max_length`` bounds the sequence, and a prompt leaves at least one new token.

    Raises:
        ValueError: The new tokens leave no room for a prompt.

    Example::

        >>> from transformers import GenerationConfig
        >>> prompt_budget(64, GenerationConfig(max_new_tokens=16), needs_room=True)
        48
    """
    if context is None:
        return None
    new_tokens = config.max_new_tokens
    if new_tokens is None:
        new_tokens = max(1, context - config.max_length + 1) if config.max_length else 1
    budget = context - new_tokens if needs_room else context
    if budget < 1:
        raise ValueError(
            f"`generation.max_new_tokens`={new_tokens} leaves no room for a prompt in the model's context length "
            f"{context}"
        )
    return budget


def validation_prompts(
    trainer: Any, pl_module: Any, tokenizer: LoadedTokenizer, *, count: int, prompt_tokens: int,
    reference_tokens: int, budget: int | None,
) -> EncodedPrompts:
    """`prompts_from_batches` of the validation dataloader (the datamodule's, else the LightningModule's), the
    prompt cut to ``budget`` tokens.

    Raises:
        ValueError: There is no validation dataloader, or as `prompts_from_batches`.
    """
    source = trainer.datamodule if trainer.datamodule is not None else pl_module
    try:
        loader = source.val_dataloader()
    except Exception as err:
        raise ValueError(f"`prompts_from_data`={count} needs a validation dataloader: {err}") from err
    prompt_tokens = min(prompt_tokens, budget) if budget is not None else prompt_tokens
    return prompts_from_batches(loader, tokenizer, count=count, prompt_tokens=prompt_tokens,
                                reference_tokens=reference_tokens)
