"""Which adapter drives a model: the one asked for, or the protocol its methods' signatures show."""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable
from typing import Any, Literal

from torch import nn

from lightning_gen.decoding.adapters.base import ModelAdapter
from lightning_gen.decoding.adapters.hf import HFAdapter
from lightning_gen.decoding.adapters.input_pos import GptFastAdapter, LitGPTAdapter, TorchtuneAdapter
from lightning_gen.decoding.adapters.plain import PlainAdapter

__all__ = ["AdapterName", "adapter_class", "detect_protocol", "protocol_name", "resolve_adapter"]

AdapterName = Literal["auto", "plain", "litgpt", "gpt-fast", "torchtune", "hf"]
Protocol = Literal["plain", "litgpt", "gpt-fast", "torchtune", "hf"]

_BY_NAME: dict[str, type[ModelAdapter]] = {
    "plain": PlainAdapter, "litgpt": LitGPTAdapter, "gpt-fast": GptFastAdapter, "torchtune": TorchtuneAdapter,
    "hf": HFAdapter,
}


def protocol_name(adapter: ModelAdapter) -> str:
    """The name ``adapter=`` takes for an adapter's protocol (``"hf"``, ``"gpt-fast"`` ...), else its class name.

    Example::

        >>> protocol_name(PlainAdapter(nn.Linear(2, 2)))
        'plain'
    """
    return next((name for name, cls in _BY_NAME.items() if type(adapter) is cls), type(adapter).__name__)


def _is_hf_model(model: Any) -> bool:
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def _accepts(function: Callable[..., Any], *names: str) -> bool:
    """Whether ``function`` takes every one of ``names`` as a keyword (or any keyword, through ``**kwargs``)."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return all(name in params and params[name].kind is not inspect.Parameter.POSITIONAL_ONLY for name in names)


def detect_protocol(model: Any) -> tuple[Protocol, str | None]:
    """The calling protocol of ``model``, judged by what its methods accept, and a warning when a cache method
    was found whose signature fits no known protocol.

    litgpt: ``set_kv_cache(batch_size, max_seq_length, ...)`` and ``clear_kv_cache()``; gpt-fast:
    ``setup_caches(max_batch_size, max_seq_length)``; torchtune: ``setup_caches(batch_size, dtype,
    decoder_max_seq_len=...)`` with ``forward(tokens, input_pos=..., mask=...)``.

    Example::

        >>> class Fast(nn.Module):
        ...     def setup_caches(self, max_batch_size, max_seq_length): ...
        >>> detect_protocol(Fast()), detect_protocol(nn.Linear(2, 2))
        (('gpt-fast', None), ('plain', None))
    """
    if _is_hf_model(model):
        return "hf", None
    set_kv, clear_kv = getattr(model, "set_kv_cache", None), getattr(model, "clear_kv_cache", None)
    if callable(set_kv) and callable(clear_kv) and _accepts(set_kv, "batch_size", "max_seq_length"):
        return "litgpt", None
    setup = getattr(model, "setup_caches", None)
    if not callable(setup):
        return "plain", None
    if _accepts(setup, "max_batch_size", "max_seq_length"):
        return "gpt-fast", None
    if _accepts(setup, "batch_size", "dtype", "decoder_max_seq_len") and _accepts(model.forward, "input_pos", "mask"):
        return "torchtune", None
    try:
        signature = str(inspect.signature(setup))
    except (TypeError, ValueError):
        signature = "(...)"
    return "plain", (
        f"{type(model).__name__}.setup_caches{signature} fits neither gpt-fast's (max_batch_size, max_seq_length) nor "
        "torchtune's (batch_size, dtype, decoder_max_seq_len=...): the model is called the plain way, model(ids), "
        "without its cache; pass `adapter=` (a ModelAdapter) to use it"
    )


def _needs_its_caches(protocol: Protocol) -> bool:
    # gpt-fast's forward indexes `causal_mask` and `freqs_cis`, made by `setup_caches`: no plain call.
    return protocol == "gpt-fast"


def adapter_class(adapter: Any) -> type[ModelAdapter] | None:
    """The `ModelAdapter` subclass that ``adapter`` names (a protocol name, a class, or a dotted class path);
    None for ``"auto"`` / None.

    Raises:
        ValueError: An unknown name, or a path that names no `ModelAdapter` subclass.
        TypeError: ``adapter`` is neither a name, a class path, nor a `ModelAdapter` subclass.
    """
    if adapter is None or adapter == "auto":
        return None
    if isinstance(adapter, type) and issubclass(adapter, ModelAdapter):
        return adapter
    if not isinstance(adapter, str):
        raise TypeError(f"`adapter` must be a name, a ModelAdapter or a ModelAdapter subclass, got {type(adapter).__name__}")
    if adapter in _BY_NAME:
        return _BY_NAME[adapter]
    module_name, _, attr = adapter.rpartition(".")
    found: Any = None
    if module_name:
        try:
            found = getattr(importlib.import_module(module_name), attr, None)
        except ImportError:
            found = None
    if not (isinstance(found, type) and issubclass(found, ModelAdapter)):
        raise ValueError(
            f"`adapter` must be one of {['auto', *_BY_NAME]}, the import path of a ModelAdapter subclass, or a "
            f"ModelAdapter, got {adapter!r}"
        )
    return found


def resolve_adapter(
    model: nn.Module,
    adapter: ModelAdapter | AdapterName | str | type[ModelAdapter] | None = None,
    *,
    use_cache: bool = True,
    context_length: int | None = None,
) -> ModelAdapter:
    """Pick the adapter for ``model``: the one given, or by detecting its protocol (see `detect_protocol`).

    With ``use_cache=False`` a cache model is called the plain way, except a gpt-fast model, whose forward needs
    its caches: it recomputes the whole sequence at ``input_pos = arange(T)`` every step. A ``setup_caches`` of
    an unknown signature gives the plain way and one warning.

    Raises:
        ValueError: ``adapter`` is an unknown name.
        TypeError: ``adapter`` is neither a name, a `ModelAdapter`, nor a `ModelAdapter` subclass.
    """
    if isinstance(adapter, ModelAdapter):
        return adapter
    cls = adapter_class(adapter)
    recompute = False
    if cls is None:
        protocol, warning = detect_protocol(model)
        if warning is not None:
            warnings.warn(warning, stacklevel=2)
        recompute = not use_cache and _needs_its_caches(protocol)
        cls = _BY_NAME[protocol] if use_cache or protocol == "hf" or recompute else PlainAdapter
    if cls is HFAdapter:
        return HFAdapter(model, context_length=context_length, use_cache=use_cache)
    if recompute:
        return cls(model, context_length=context_length, recompute=True)
    return cls(model, context_length=context_length)
