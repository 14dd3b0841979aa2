"""What a model advertises about itself: its context length, its vocabulary, its device."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["advertises", "find_context_length", "find_vocab_size", "model_device"]

# Attributes that commonly hold a model's context length, tried in order on the model and on its settings.
_CONTEXT_ATTRS = ("max_seq_length", "block_size", "context_length", "max_seq_len", "n_positions",
                  "max_position_embeddings", "n_ctx", "seq_len", "sequence_len")
_VOCAB_ATTRS = ("vocab_size", "padded_vocab_size")
# Where models keep their settings: `config` (HF, nanoGPT, litgpt, gpt-fast), `args` (mamba-minimal, Meta's
# llama reference), `params`.
_SETTINGS = ("config", "args", "params")


def _owners(model: Any) -> list[Any]:
    owners = [model]
    for name in _SETTINGS:
        settings = getattr(model, name, None)
        # Not a method nor a submodule: HF's `PreTrainedModel.config` is an object, nanoGPT's a dataclass.
        if settings is not None and not callable(settings) and not isinstance(settings, (nn.Module, torch.Tensor)):
            owners.append(settings)
    return owners


def _first_positive(model: Any, attrs: tuple[str, ...]) -> int | None:
    for owner in _owners(model):
        for attr in attrs:
            value = owner.get(attr) if isinstance(owner, dict) else getattr(owner, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def find_context_length(model: Any) -> int | None:
    """The context length a model advertises (``max_seq_length``, ``block_size``, ``config.n_positions``,
    ``config.sequence_len`` ...), on the model or its ``config`` / ``args`` / ``params``.

    Example::

        >>> from types import SimpleNamespace
        >>> model = nn.Linear(2, 2)
        >>> model.config = SimpleNamespace(block_size=64)
        >>> find_context_length(model), find_context_length(nn.Linear(2, 2))
        (64, None)
    """
    return _first_positive(model, _CONTEXT_ATTRS)


def find_vocab_size(model: Any) -> int | None:
    """The vocabulary size a model advertises (``vocab_size``, then ``padded_vocab_size``, on the model or its
    ``config`` / ``args`` / ``params``).

    Example::

        >>> from types import SimpleNamespace
        >>> model = nn.Linear(2, 2)
        >>> model.args = SimpleNamespace(vocab_size=50)    # mamba-minimal's ModelArgs
        >>> find_vocab_size(model)
        50
    """
    return _first_positive(model, _VOCAB_ATTRS)


def advertises(model: Any) -> bool:
    """Whether ``model`` itself says how long its context or how large its vocabulary is."""
    return find_context_length(model) is not None or find_vocab_size(model) is not None


def model_device(model: Any, default: torch.device) -> torch.device:
    """The device of a module's first parameter or buffer; ``default`` for anything without tensors."""
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return default
