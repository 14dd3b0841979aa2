"""How `generate` talks to a model: one small adapter per calling protocol.

`generate` only needs "logits of the next token for every row" at two moments: after the prompt (prefill) and
after each new token (decode). An adapter answers those two questions for one model protocol and owns whatever
cache that needs. Four are built in and auto-detected; a new cache protocol is a subclass with three methods::

    class MyCacheAdapter(ModelAdapter):
        def prefill(self, input_ids, attention_mask, *, max_length):
            self.model.allocate(input_ids.shape[0], max_length)
            return last_logits(self.model(input_ids, start=0))        # (B, V)

        def decode(self, input_ids, attention_mask):
            pos = input_ids.shape[1] - 1
            return last_logits(self.model(input_ids[:, -1:], start=pos))

        def close(self):
            self.model.free()

    generate(model, ids, adapter=MyCacheAdapter(model), max_new_tokens=20)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "AdapterName",
    "GptFastAdapter",
    "HFAdapter",
    "LitGPTAdapter",
    "ModelAdapter",
    "PlainAdapter",
    "find_context_length",
    "find_vocab_size",
    "has_padding",
    "last_logits",
    "model_device",
    "output_logits",
    "require_compilable",
    "resolve_adapter",
]

AdapterName = Literal["auto", "plain", "litgpt", "gpt-fast", "hf"]

# Attributes that commonly hold a model's context length, tried in order on the model and on `model.config`.
_CONTEXT_ATTRS = ("max_seq_length", "block_size", "context_length", "max_seq_len", "n_positions",
                  "max_position_embeddings", "n_ctx", "seq_len")


def output_logits(output: Any) -> torch.Tensor:
    """The logits tensor in whatever a model's forward returned: a tensor, a tuple or list (first item), or a
    mapping / HF `ModelOutput` with ``logits``."""
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


def find_context_length(model: nn.Module) -> int | None:
    """The context length a model advertises (``max_seq_length``, ``block_size``, ``config.n_positions`` ...)."""
    for owner in (model, getattr(model, "config", None)):
        if owner is None:
            continue
        for attr in _CONTEXT_ATTRS:
            value = getattr(owner, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def find_vocab_size(model: Any) -> int | None:
    """The vocabulary size a model advertises (``vocab_size``, then ``padded_vocab_size``, on it or its config)."""
    for owner in (model, getattr(model, "config", None)):
        for attr in ("vocab_size", "padded_vocab_size"):
            value = getattr(owner, attr, None) if owner is not None else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def has_padding(attention_mask: torch.Tensor | None) -> bool:
    """Whether an attention mask marks any position as padding (a host sync: once per call, not per token).

    Example::

        >>> has_padding(torch.tensor([[0, 1, 1]])), has_padding(torch.ones(1, 3)), has_padding(None)
        (True, False, False)
    """
    return attention_mask is not None and not bool((attention_mask == 1).all())


def model_device(model: Any, default: torch.device) -> torch.device:
    """The device of a module's first parameter or buffer; ``default`` for anything without tensors."""
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return default


class ModelAdapter:
    """The protocol between `generate` and one kind of model.

    Subclasses implement `prefill` and `decode`, and `close` when they hold a cache. Both return the logits of
    the next token, `(B, V)`; `generate` casts them to float32 before the processors.

    Attributes:
        model: The wrapped module.
        supports_attention_mask: Whether the model can take a left-padded batch with an attention mask.
            When False, prompts of different lengths are grouped by length instead of padded.
        context_length: The longest sequence the model accepts, or None if unknown.
    """

    supports_attention_mask: bool = False
    #: Whether prompt plus new tokens must fit in `context_length` (cache models); plain models crop instead.
    needs_room_for_new_tokens: bool = True

    def __init__(self, model: nn.Module, *, context_length: int | None = None) -> None:
        self.model = model
        self.context_length = context_length if context_length is not None else find_context_length(model)

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *, max_length: int) -> torch.Tensor:
        """Run the prompt `(B, T)`; prepare caches for sequences of up to ``max_length`` tokens."""
        raise NotImplementedError

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Logits after the last token of ``input_ids`` `(B, T)`, the whole sequence so far."""
        raise NotImplementedError

    def close(self) -> None:
        """Free caches. Called once per `generate` call, also after an error."""

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
            f"`compile` needs a model with a static KV cache (the litgpt or gpt-fast protocol), whose one-token decode "
            f"step has fixed shapes; {type(adapter).__name__} changes shapes every step"
        )


class PlainAdapter(ModelAdapter):
    """``model(ids)`` re-run on the whole sequence every step, cropped to the context length from the left."""

    needs_room_for_new_tokens = False

    def _forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.context_length is not None and input_ids.shape[1] > self.context_length:
            input_ids = input_ids[:, -self.context_length:]
        return last_logits(self.model(input_ids))

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *, max_length: int) -> torch.Tensor:
        return self._forward(input_ids)

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self._forward(input_ids)


class _InputPosAdapter(ModelAdapter):
    """Shared decode for the ``model(idx, input_pos)`` protocols of litgpt and gpt-fast."""

    _positions: tuple[torch.Tensor, ...] = ()  # `input_pos` of each step: tensor([0]), tensor([1]) ... made at once
    _compiled: Any = None  # torch.compile'd `_decode_step`, when `compile` was called
    _static: tuple[torch.Tensor, torch.Tensor] | None = None  # fixed-address (B, 1) token and (1,) position

    @property
    def can_compile(self) -> bool:
        return True

    def compile(self, options: Mapping[str, Any]) -> None:
        try:
            self._compiled = _compiled_decode_step(tuple(sorted(options.items())))
        except TypeError:  # unhashable options (an inductor `options` dict ...): a compiled step of its own
            self._compiled = torch.compile(_decode_step, **options)

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        pos = input_ids.shape[1] - 1
        if self._compiled is not None:
            return self._decode_compiled(input_ids, pos)
        if pos >= len(self._positions):
            self._positions = torch.arange(2 * (pos + 1), device=input_ids.device).split(1)
        logits = self.model(input_ids[:, pos:], input_pos=self._positions[pos])
        # The common (B, 1, V) without `last_logits`' questions: this runs once per token.
        return logits[:, -1] if isinstance(logits, torch.Tensor) and logits.dim() == 3 else last_logits(logits)

    def _decode_compiled(self, input_ids: torch.Tensor, pos: int) -> torch.Tensor:
        # Inputs at fixed addresses (made by `_prefill_forward`), written in place (no host sync), so that CUDA graphs
        # can replay; the output is cloned because the next replay overwrites it.
        token, position = self._static
        token.copy_(input_ids[:, pos:])
        position.fill_(pos)
        return last_logits(self._compiled(self.model, token, position)).clone()

    def _prefill_forward(self, input_ids: torch.Tensor, max_length: int) -> torch.Tensor:
        length = input_ids.shape[1]
        self._positions = torch.arange(max(max_length, length), device=input_ids.device).split(1)
        if self._compiled is not None:
            self._static = (input_ids.new_zeros((input_ids.shape[0], 1)), input_ids.new_zeros(1))
        return last_logits(self.model(input_ids, input_pos=torch.arange(length, device=input_ids.device)))


def _decode_step(model: nn.Module, idx: torch.Tensor, input_pos: torch.Tensor) -> Any:
    return model(idx, input_pos=input_pos)


@functools.cache
def _compiled_decode_step(options: tuple[tuple[str, Any], ...]) -> Any:
    """One compiled `_decode_step` per set of options, shared by every call: dynamo keeps one graph per model and
    shape, so a new `generate` call with the same shapes reuses it."""
    return torch.compile(_decode_step, **dict(options))


class LitGPTAdapter(_InputPosAdapter):
    """litgpt's protocol: ``set_kv_cache(batch_size, max_seq_length, device)``, ``model(idx, input_pos)``,
    ``clear_kv_cache()``."""

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *, max_length: int) -> torch.Tensor:
        self.model.set_kv_cache(batch_size=input_ids.shape[0], max_seq_length=max_length, device=input_ids.device)
        return self._prefill_forward(input_ids, max_length)

    def close(self) -> None:
        self.model.clear_kv_cache()


class GptFastAdapter(_InputPosAdapter):
    """gpt-fast's protocol: ``setup_caches(max_batch_size, max_seq_length)``, ``model(idx, input_pos)``.

    gpt-fast overwrites ``model.max_seq_length`` with the size of its last caches, so the context is read from
    ``config.block_size`` first. Its caches are kept for reuse; `close` frees them only if the model has
    ``clear_caches()``.
    """

    def __init__(self, model: nn.Module, *, context_length: int | None = None) -> None:
        block_size = getattr(getattr(model, "config", None), "block_size", None)
        super().__init__(model, context_length=context_length if context_length is not None else block_size)

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *, max_length: int) -> torch.Tensor:
        if getattr(self.model, "max_batch_size", None) != input_ids.shape[0]:
            # gpt-fast keeps larger caches for a smaller batch, which its attention cannot use: reallocate.
            self.model.max_seq_length = -1
        self.model.setup_caches(max_batch_size=input_ids.shape[0], max_seq_length=max_length)
        return self._prefill_forward(input_ids, max_length)

    def close(self) -> None:
        clear = getattr(self.model, "clear_caches", None)
        if callable(clear):
            clear()


class HFAdapter(ModelAdapter):
    """A transformers `PreTrainedModel`, called exactly as its own `generate` calls it.

    Same inputs as HF's ``prepare_inputs_for_generation``: a `DynamicCache` (or none with ``use_cache=False``),
    position ids from the attention mask, the mask dropped when it has no padding, ``logits_to_keep=1``.
    """

    supports_attention_mask = True

    def __init__(self, model: nn.Module, *, context_length: int | None = None, use_cache: bool = True) -> None:
        self.model = model
        # HF only warns past `max_position_embeddings` (rotary models run beyond it): no limit unless given.
        self.context_length = context_length
        self.use_cache = use_cache
        params = inspect.signature(model.forward).parameters
        self._takes_positions = "position_ids" in params
        self._takes_logits_to_keep = "logits_to_keep" in params
        # transformers renamed `past_key_values` to `cache` during 5.x (in inputs and outputs alike).
        self._cache_key = "past_key_values" if "past_key_values" in params and "cache" not in params else "cache"
        self._cache: Any = None
        self._padded = False

    def _positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is not None and self._padded:
            positions = attention_mask.long().cumsum(-1) - 1
            return positions.masked_fill(attention_mask == 0, 0)  # (B, T); pads get 0 as in HF
        return torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)  # (1, T)

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, positions: torch.Tensor) -> torch.Tensor:
        inputs: dict[str, Any] = {"input_ids": input_ids.contiguous(), "use_cache": self.use_cache, "return_dict": True}
        if self._padded:
            inputs["attention_mask"] = attention_mask
        if self._takes_positions:
            inputs["position_ids"] = positions.contiguous()
        if self._takes_logits_to_keep:
            inputs["logits_to_keep"] = 1
        if self._cache is not None:
            inputs[self._cache_key] = self._cache
        out = self.model(**inputs)
        if self.use_cache:
            self._cache = out.get(self._cache_key, self._cache)
        return last_logits(out)

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *, max_length: int) -> torch.Tensor:
        from transformers import DynamicCache

        self._padded = has_padding(attention_mask)
        if self.use_cache:
            self._cache = DynamicCache(config=self.model.config.get_text_config(decoder=True))
        return self._forward(input_ids, attention_mask, self._positions(input_ids, attention_mask))

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        positions = self._positions(input_ids, attention_mask)
        if self.use_cache:
            return self._forward(input_ids[:, -1:], attention_mask, positions[:, -1:])
        return self._forward(input_ids, attention_mask, positions)

    def close(self) -> None:
        self._cache = None


_BY_NAME: dict[str, type[ModelAdapter]] = {
    "plain": PlainAdapter, "litgpt": LitGPTAdapter, "gpt-fast": GptFastAdapter, "hf": HFAdapter,
}


def _is_hf_model(model: nn.Module) -> bool:
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def resolve_adapter(
    model: nn.Module,
    adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
    *,
    use_cache: bool = True,
    context_length: int | None = None,
) -> ModelAdapter:
    """Pick the adapter for ``model``: the one given, or by detecting its protocol.

    Detection order: a transformers `PreTrainedModel`; litgpt (``set_kv_cache`` and ``clear_kv_cache``);
    gpt-fast (``setup_caches``); otherwise plain ``model(ids)``. With ``use_cache=False`` a cache model is
    called the plain way.

    Raises:
        ValueError: ``adapter`` is an unknown name.
        TypeError: ``adapter`` is neither a name, a `ModelAdapter`, nor a `ModelAdapter` subclass.
    """
    if isinstance(adapter, ModelAdapter):
        return adapter
    if isinstance(adapter, type) and issubclass(adapter, ModelAdapter):
        cls = adapter
    elif adapter is None or adapter == "auto":
        if _is_hf_model(model):
            cls = HFAdapter
        elif not use_cache:
            cls = PlainAdapter
        elif callable(getattr(model, "set_kv_cache", None)) and callable(getattr(model, "clear_kv_cache", None)):
            cls = LitGPTAdapter
        elif callable(getattr(model, "setup_caches", None)):
            cls = GptFastAdapter
        else:
            cls = PlainAdapter
    elif isinstance(adapter, str):
        if adapter not in _BY_NAME:
            raise ValueError(f"`adapter` must be one of {['auto', *_BY_NAME]} or a ModelAdapter, got {adapter!r}")
        cls = _BY_NAME[adapter]
    else:
        raise TypeError(f"`adapter` must be a name, a ModelAdapter or a ModelAdapter subclass, got {type(adapter).__name__}")
    if cls is HFAdapter:
        return HFAdapter(model, context_length=context_length, use_cache=use_cache)
    return cls(model, context_length=context_length)
