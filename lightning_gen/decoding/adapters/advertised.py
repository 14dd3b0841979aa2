"""What a model advertises about itself: its context length, its vocabulary, its device."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["advertised_context", "advertised_vocab", "advertises", "find_context_length", "find_vocab_size",
           "model_device"]

# Attributes that commonly hold a model's context length, tried in order on the model and on its settings.
_CONTEXT_ATTRS = ("max_seq_length", "block_size", "context_length", "max_seq_len", "n_positions",
                  "max_position_embeddings", "n_ctx", "seq_len", "sequence_len")
_VOCAB_ATTRS = ("vocab_size", "padded_vocab_size")
# Where models keep their settings: `config` (HF, nanoGPT, litgpt, gpt-fast), `args` (mamba-minimal, Meta's
# llama reference), `params`.
_SETTINGS = ("config", "args", "params")


def _owners(model: Any) -> list[tuple[str, Any]]:
    owners = [("", model)]
    for name in _SETTINGS:
        settings = getattr(model, name, None)
        # Not a method nor a submodule: HF's `PreTrainedModel.config` is an object, nanoGPT's a dataclass.
        if settings is not None and not callable(settings) and not isinstance(settings, (nn.Module, torch.Tensor)):
            owners.append((f"{name}.", settings))
    return owners


def _first_positive(model: Any, attrs: tuple[str, ...]) -> tuple[int, str] | None:
    for prefix, owner in _owners(model):
        for attr in attrs:
            value = owner.get(attr) if isinstance(owner, dict) else getattr(owner, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value, f"{prefix}{attr}"
    return None


def advertised_context(model: Any) -> tuple[int, str] | None:
    """The context length a model advertises and the attribute that says it (``"config.block_size"``), or None.

    Tried in order on the model (or a mapping such as a LightningModule's ``hparams``) and on its ``config`` /
    ``args`` / ``params``: ``max_seq_length``, ``block_size``, ``context_length``, ``max_seq_len``, ``n_positions``,
    ``max_position_embeddings``, ``n_ctx``, ``seq_len``, ``sequence_len``.

    Example::

        >>> from types import SimpleNamespace
        >>> model = nn.Linear(2, 2)
        >>> model.config = SimpleNamespace(block_size=64)
        >>> advertised_context(model), advertised_context({"max_seq_len": 32}), advertised_context(nn.Linear(2, 2))
        ((64, 'config.block_size'), (32, 'max_seq_len'), None)
    """
    return _first_positive(model, _CONTEXT_ATTRS)


def advertised_vocab(model: Any) -> tuple[int, str] | None:
    """The vocabulary size a model advertises (``vocab_size``, then ``padded_vocab_size``, on the model or its
    ``config`` / ``args`` / ``params``) and the attribute that says it, or None.

    Example::

        >>> from types import SimpleNamespace
        >>> model = nn.Linear(2, 2)
        >>> model.args = SimpleNamespace(vocab_size=50)    # mamba-minimal's ModelArgs
        >>> advertised_vocab(model)
        (50, 'args.vocab_size')
    """
    return _first_positive(model, _VOCAB_ATTRS)


def find_context_length(model: Any) -> int | None:
    """The context length a model advertises (see `advertised_context`), or None.

    Example::

        >>> from types import SimpleNamespace
        >>> model = nn.Linear(2, 2)
        >>> model.config = SimpleNamespace(block_size=64)
        >>> find_context_length(model), find_context_length(nn.Linear(2, 2))
        (64, None)
    """
    found = advertised_context(model)
    return found[0] if found else None


def find_vocab_size(model: Any) -> int | None:
    """The vocabulary size a model advertises (see `advertised_vocab`), or None."""
    found = advertised_vocab(model)
    return found[0] if found else None


def advertises(model: Any) -> bool:
    """Whether ``model`` itself says how long its context or how large its vocabulary is."""
    return find_context_length(model) is not None or find_vocab_size(model) is not None


def model_device(model: Any, default: torch.device) -> torch.device:
    """The device of a module's first parameter or buffer; ``default`` for anything without tensors."""
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return default
