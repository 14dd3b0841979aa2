"""The adapter protocol, and the logits a forward returned."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lightning_gen.decoding.adapters.advertised import find_context_length
from lightning_gen.decoding.adapters.state import kept_state

__all__ = ["ModelAdapter", "has_padding", "last_logits", "output_logits", "require_compilable"]


def output_logits(output: Any) -> torch.Tensor:
    """The logits tensor in whatever a model's forward returned: a tensor, a tuple or list (first item), or a
    mapping / HF `ModelOutput` with ``logits``.

    Example::

        >>> output_logits((torch.zeros(1, 2, 3), "loss")).shape
        torch.Size([1, 2, 3])
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) or hasattr(output, "logits"):
        logits = output["logits"] if isinstance(output, Mapping) else output.logits
    elif isinstance(output, (tuple, list)):
        logits = output[0]
    else:
        logits = output
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"the model must return logits as a tensor, a tuple, or a dict with 'logits'; got {type(logits).__name__}")
    return logits


def last_logits(output: Any) -> torch.Tensor:
    """The next-token logits `(B, V)` from whatever a model's forward returned (see `output_logits`).

    Accepts logits `(B, T, V)`, `(B, 1, V)` (nanoGPT) or `(B, V)`.

    Example::

        >>> last_logits(torch.zeros(2, 5, 7)).shape
        torch.Size([2, 7])
    """
    logits = output_logits(output)
    if logits.dim() == 3:
        return logits[:, -1]
    if logits.dim() == 2:
        return logits
    raise ValueError(f"the model's logits must have shape (B, T, V) or (B, V), got {tuple(logits.shape)}")


def has_padding(attention_mask: torch.Tensor | None) -> bool:
    """Whether an attention mask marks any position as padding (a host sync: once per call, not per token).

    Example::

        >>> has_padding(torch.tensor([[0, 1, 1]])), has_padding(torch.ones(1, 3)), has_padding(None)
        (True, False, False)
    """
    return attention_mask is not None and not bool((attention_mask == 1).all())


class ModelAdapter:
    """The protocol between `generate` and one kind of model.

    Subclasses implement `prefill` and `decode`, and `close` when they hold a cache. Both return the logits of
    the next token, `(B, V)`; `generate` casts them to float32 before the processors. `sequence_logits` gives
    the logits of every position, for scoring; the default calls ``model(ids)``.

    Attributes:
        model: The wrapped module.
        supports_attention_mask: Whether the model can take a left-padded batch with an attention mask.
            When False, prompts of different lengths are grouped by length instead of padded.
        context_length: The longest sequence the model accepts, or None if unknown.
        vocab_size: Ids that may be sampled, ``[0, vocab_size)``, when fewer than the logits (a padded
            vocabulary); None keeps what `generate` finds.
    """

    supports_attention_mask: bool = False
    #: Whether prompt plus new tokens must fit in `context_length` (cache models); plain models crop instead.
    needs_room_for_new_tokens: bool = True

    def __init__(self, model: nn.Module, *, context_length: int | None = None, vocab_size: int | None = None) -> None:
        self.model = model
        self.context_length = context_length if context_length is not None else find_context_length(model)
        self.vocab_size = vocab_size

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *, max_length: int) -> torch.Tensor:
        """Run the prompt `(B, T)`; prepare caches for sequences of up to ``max_length`` tokens."""
        raise NotImplementedError

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Logits after the last token of ``input_ids`` `(B, T)`, the whole sequence so far."""
        raise NotImplementedError

    def close(self) -> None:
        """Free caches. Called once per `generate` call, also after an error."""

    def configure(self, generation_config: Any) -> None:
        """Receive the call's resolved `GenerationConfig` before `prefill` (transformers' cache choice reads it)."""

    def sequence_logits(self, input_ids: torch.Tensor) -> Any:
        """What the model returns for every position of ``input_ids`` `(B, T)`, teacher-forced (for scoring)."""
        return self.model(input_ids)

    def kept(self) -> Any:
        """A context manager that restores every module's attributes after a call (see `kept_state`)."""
        return kept_state(self.model)

    @property
    def can_compile(self) -> bool:
        """Whether `compile` can work: the decode step has fixed shapes (a static KV cache)."""
        return False

    def compile(self, options: Mapping[str, Any]) -> None:
        """Run each decode step through ``torch.compile(**options)``; only when `can_compile`."""
        raise NotImplementedError(f"{type(self).__name__} cannot compile its decode step")


def require_compilable(adapter: ModelAdapter) -> None:
    """Raise unless ``adapter`` can compile its decode step.

    Raises:
        ValueError: The model has no static KV cache, so its decode step changes shape every token.
    """
    if not adapter.can_compile:
        raise ValueError(
            f"`compile` needs a model with a static KV cache (the litgpt or gpt-fast protocol, or a transformers model "
            f"that can compile its forward over a static cache), whose one-token decode step has fixed shapes; "
            f"{type(adapter).__name__} changes shapes every step"
        )
