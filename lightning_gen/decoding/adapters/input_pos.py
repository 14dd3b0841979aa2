"""Static KV-cache models called as ``model(idx, input_pos)``: litgpt, gpt-fast and torchtune.

Each allocates fresh caches for the call (never writing into caches a user keeps for training), under the
device of the input and in the dtype autocast computes in; `ModelAdapter.kept` then puts the model's own
buffers, submodules and sizes back.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lightning_gen.decoding.adapters.base import ModelAdapter, last_logits

__all__ = ["GptFastAdapter", "LitGPTAdapter", "TorchtuneAdapter", "compute_dtype"]


def compute_dtype(model: nn.Module, device: torch.device) -> torch.dtype:
    """The dtype activations have: autocast's when it is on for ``device``, else the first floating weight's.

    Example::

        >>> compute_dtype(nn.Linear(2, 2), torch.device("cpu"))
        torch.float32
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     compute_dtype(nn.Linear(2, 2), torch.device("cpu"))
        torch.bfloat16
    """
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    for param in model.parameters():
        if param.is_floating_point():
            return param.dtype
    return torch.get_default_dtype()


class _InputPosAdapter(ModelAdapter):
    """Shared decode for the ``model(idx, input_pos)`` protocols.

    With ``recompute`` (``use_cache=False`` for a model whose forward needs its caches) every step runs the whole
    sequence at ``input_pos = arange(T)``.
    """

    _positions: tuple[torch.Tensor, ...] = ()  # `input_pos` of each step: tensor([0]), tensor([1]) ... made at once
    _compiled: Any = None  # torch.compile'd `_decode_step`, when `compile` was called
    _static: tuple[torch.Tensor, torch.Tensor] | None = None  # fixed-address (B, 1) token and (1,) position

    def __init__(self, model: nn.Module, *, context_length: int | None = None, vocab_size: int | None = None,
                 recompute: bool = False) -> None:
        super().__init__(model, context_length=context_length, vocab_size=vocab_size)
        self.recompute = recompute

    @property
    def can_compile(self) -> bool:
        return not self.recompute

    def compile(self, options: Mapping[str, Any]) -> None:
        try:
            self._compiled = _compiled_decode_step(tuple(sorted(options.items())))
        except TypeError:  # unhashable options (an inductor `options` dict ...): a compiled step of its own
            self._compiled = torch.compile(_decode_step, **options)

    def _allocate(self, batch_size: int, max_length: int, device: torch.device) -> None:
        raise NotImplementedError

    def _call(self, input_ids: torch.Tensor, input_pos: torch.Tensor) -> Any:
        return self.model(input_ids, input_pos=input_pos)

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *, max_length: int) -> torch.Tensor:
        with input_ids.device:  # as gpt-fast's generate.py: caches are made where the input is
            self._allocate(input_ids.shape[0], max_length, input_ids.device)
        length = input_ids.shape[1]
        self._positions = torch.arange(max(max_length, length), device=input_ids.device).split(1)
        if self._compiled is not None:
            self._static = (input_ids.new_zeros((input_ids.shape[0], 1)), input_ids.new_zeros(1))
        return last_logits(self._call(input_ids, torch.arange(length, device=input_ids.device)))

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        pos = input_ids.shape[1] - 1
        if self.recompute:
            return last_logits(self._call(input_ids, torch.arange(pos + 1, device=input_ids.device)))
        if self._compiled is not None:
            return self._decode_compiled(input_ids, pos)
        if pos >= len(self._positions):
            self._positions = torch.arange(2 * (pos + 1), device=input_ids.device).split(1)
        logits = self._call(input_ids[:, pos:], self._positions[pos])
        # The common (B, 1, V) without `last_logits`' questions: this runs once per token.
        return logits[:, -1] if isinstance(logits, torch.Tensor) and logits.dim() == 3 else last_logits(logits)

    def _decode_compiled(self, input_ids: torch.Tensor, pos: int) -> torch.Tensor:
        # Inputs at fixed addresses (made by `prefill`), written in place (no host sync), so that CUDA graphs
        # can replay; the output is cloned because the next replay overwrites it.
        token, position = self._static
        token.copy_(input_ids[:, pos:])
        position.fill_(pos)
        return last_logits(self._compiled(self.model, token, position)).clone()

    def sequence_logits(self, input_ids: torch.Tensor) -> Any:
        # Fresh caches just long enough, the whole sequence at once, the model's state put back.
        with self.kept():
            with input_ids.device:
                self._allocate(input_ids.shape[0], input_ids.shape[1], input_ids.device)
            try:
                return self._call(input_ids, torch.arange(input_ids.shape[1], device=input_ids.device))
            finally:
                self.close()


def _decode_step(model: nn.Module, idx: torch.Tensor, input_pos: torch.Tensor) -> Any:
    return model(idx, input_pos=input_pos)


@functools.cache
def _compiled_decode_step(options: tuple[tuple[str, Any], ...]) -> Any:
    """One compiled `_decode_step` per set of options, shared by every call: dynamo keeps one graph per model and
    shape, so a new `generate` call with the same shapes reuses it."""
    return torch.compile(_decode_step, **dict(options))


class LitGPTAdapter(_InputPosAdapter):
    """litgpt's protocol: ``set_kv_cache(batch_size, max_seq_length, device)``, ``model(idx, input_pos)``,
    ``clear_kv_cache()``. Its forward runs without caches, so scoring is a plain ``model(ids)``."""

    def _allocate(self, batch_size: int, max_length: int, device: torch.device) -> None:
        self.model.set_kv_cache(batch_size=batch_size, max_seq_length=max_length, device=device)

    def close(self) -> None:
        self.model.clear_kv_cache()

    def sequence_logits(self, input_ids: torch.Tensor) -> Any:
        return self.model(input_ids)


class GptFastAdapter(_InputPosAdapter):
    """gpt-fast's protocol: ``setup_caches(max_batch_size, max_seq_length)``, ``model(idx, input_pos)``.

    gpt-fast reuses caches that are large enough; the adapter forces new ones (``max_seq_length = -1``) so the
    user's are never written, casts them to the dtype autocast computes in (gpt-fast makes them in the weights'
    dtype), and restores caches, ``causal_mask``, ``freqs_cis``, ``max_batch_size`` and ``max_seq_length``
    afterwards. Its forward needs the caches, so ``use_cache=False`` recomputes with ``input_pos = arange(T)``.
    The context is ``config.block_size``: gpt-fast overwrites ``max_seq_length`` with the size of its caches.
    """

    def __init__(self, model: nn.Module, *, context_length: int | None = None, vocab_size: int | None = None,
                 recompute: bool = False) -> None:
        block_size = getattr(getattr(model, "config", None), "block_size", None)
        super().__init__(model, context_length=context_length if context_length is not None else block_size,
                         vocab_size=vocab_size, recompute=recompute)

    def _allocate(self, batch_size: int, max_length: int, device: torch.device) -> None:
        self.model.max_seq_length = -1  # never reuse (and overwrite) caches the model already holds
        self.model.setup_caches(max_batch_size=batch_size, max_seq_length=max_length)
        dtype = compute_dtype(self.model, device)
        for module in self.model.modules():
            for name, buffer in module.named_buffers(recurse=False):
                if name.endswith("_cache") and buffer.is_floating_point() and buffer.dtype != dtype:
                    module.register_buffer(name, buffer.to(dtype), persistent=name not in module._non_persistent_buffers_set)

    def close(self) -> None:
        clear = getattr(self.model, "clear_caches", None)
        if callable(clear):
            clear()


class TorchtuneAdapter(_InputPosAdapter):
    """torchtune's ``TransformerDecoder``: ``setup_caches(batch_size, dtype, decoder_max_seq_len=...)``,
    ``forward(tokens, mask=..., input_pos=...)`` with a boolean causal mask `(B, T, S)` over the cache. Its caches count
    their own write position, so every call gets new ones; they go away with the rest of the call's state (see
    `ModelAdapter.kept`), and caches the user had set up stay as they were."""

    _mask: torch.Tensor | None = None  # (S, S) causal, True where a position may attend

    def _allocate(self, batch_size: int, max_length: int, device: torch.device) -> None:
        for module in self.model.modules():  # torchtune skips `setup_caches` where caches exist: never reuse them
            if getattr(module, "kv_cache", None) is not None:
                module.kv_cache = None
        self.model.setup_caches(batch_size, compute_dtype(self.model, device), decoder_max_seq_len=max_length)
        self._mask = torch.ones(max_length, max_length, dtype=torch.bool, device=device).tril()

    def _call(self, input_ids: torch.Tensor, input_pos: torch.Tensor) -> Any:
        batch, length = input_ids.shape
        mask = self._mask[input_pos][None].expand(batch, length, -1)  # (B, T, S)
        return self.model(input_ids, input_pos=input_pos[None].expand(batch, length), mask=mask)

    @property
    def can_compile(self) -> bool:
        return False
