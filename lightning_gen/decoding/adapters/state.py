"""What a call must leave as it found it: every module's attributes, registries and buffers.

Cache protocols allocate KV caches, masks and rope tables as buffers, submodules or plain attributes, switch flags
(torchtune's ``cache_enabled``) and resize counters (``max_batch_size``, ``decoder_max_cache_seq_len``); a training
step after sampling must see none of that, nor may a checkpoint gain cache keys. `kept_state` puts every attribute
of every module back, whatever its type; `watched_state` (what the monitor's probe runs under) also finds what a
call wrote *into* a buffer in place, which no rebinding shows, and puts its values back.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["StateChanges", "kept_state", "watched_state"]

# A module's own registries: restored in place (hooks and `state_dict` read these very dicts).
# Parameters are not among them: no protocol adds any, and FSDP2 swaps sharded and unsharded parameters in
# `_parameters` as it gathers; putting back the ones seen before a call would undo a gather FSDP2 still counts on.
_REGISTRIES = ("_buffers", "_modules")

# Wrappers whose own attributes are their engine's state, not the model's: FSDP1 initialises itself lazily at its
# first forward (which may be a round's) and DDP / DeepSpeed keep bookkeeping there. Their children are restored.
_ENGINES = (("torch.nn.parallel.distributed", "DistributedDataParallel"),
            ("torch.distributed.fsdp.fully_sharded_data_parallel", "FullyShardedDataParallel"),
            ("deepspeed.runtime.engine", "DeepSpeedEngine"))


def _engine_classes() -> tuple[type, ...]:
    # Only what is already imported: a model cannot be wrapped by an engine whose module was never loaded.
    return tuple(cls for module, name in _ENGINES
                 if isinstance(cls := getattr(sys.modules.get(module), name, None), type))


@contextmanager
def kept_state(model: Any) -> Iterator[None]:
    """Leave every submodule of ``model`` with the attributes, buffers and submodules it had before.

    Every attribute rebound in the block is bound back to what it was, whatever its type (tensors, modules, flags,
    sizes, objects); attributes that appeared are removed; the registries (``_buffers``, ``_modules`` and the set of
    non-persistent buffers) are put back as they were. Values are restored by reference: an adapter that must not
    write into a user's caches allocates fresh ones (`watched_state` finds writes into existing buffers).

    Example::

        >>> layer = nn.Linear(2, 2)
        >>> layer.cache_enabled = False
        >>> with kept_state(layer):
        ...     layer.register_buffer("cache", torch.zeros(3))
        ...     layer.cache_enabled, layer.max_seq_len = True, 64
        >>> sorted(layer.state_dict()), layer.cache_enabled, hasattr(layer, "max_seq_len")
        (['bias', 'weight'], False, False)
    """
    if not isinstance(model, nn.Module):
        yield
        return
    engines = _engine_classes()
    saved = []
    for module in model.modules():
        state = vars(module)
        registries = {name: dict(state[name]) for name in _REGISTRIES if name in state}
        saved.append((module, dict(state), registries, set(module._non_persistent_buffers_set),
                      isinstance(module, engines)))
    try:
        yield
    finally:
        for module, before, registries, non_persistent, engine in saved:
            state = vars(module)
            for name, registry in registries.items():
                state[name].clear()
                state[name].update(registry)
            module._non_persistent_buffers_set.clear()
            module._non_persistent_buffers_set.update(non_persistent)
            if engine or (state.keys() == before.keys() and all(state[k] is v for k, v in before.items())):
                continue  # no attribute appeared or was rebound (most modules, most calls): nothing to put back
            for key in [k for k in state if k not in before]:
                del state[key]
            state.update((k, v) for k, v in before.items() if k not in _REGISTRIES)


@dataclass
class StateChanges:
    """What a block wrote into the buffers of a model in place, found and undone by `watched_state`.

    Attributes:
        written: ``"path.name"`` of each buffer written in place (``"layers.0.attn.k_cache"``), in module order.
    """

    written: list[str] = field(default_factory=list)


@contextmanager
def watched_state(model: Any, *, only: set[str] | None = None) -> Iterator[StateChanges]:
    """Run the block under `kept_state`, and put back the values of every buffer it wrote into in place.

    A write in place keeps the tensor (so `kept_state` cannot see it) but moves its version counter; each buffer's
    values are copied to the CPU before the block (all buffers, or those named in ``only``) and copied back into the
    written ones after it. The names of those are in the `StateChanges` yielded.

    Example::

        >>> layer = nn.BatchNorm1d(2)
        >>> with watched_state(layer) as changes:
        ...     _ = layer.running_mean.add_(1.0)
        >>> changes.written, layer.running_mean.tolist()
        (['running_mean'], [0.0, 0.0])
    """
    changes = StateChanges()
    if not isinstance(model, nn.Module):
        yield changes
        return
    copies = [(name, buffer, buffer._version, buffer.detach().to("cpu", copy=True))
              for name, buffer in model.named_buffers(remove_duplicate=True) if only is None or name in only]
    try:
        with kept_state(model):
            yield changes
    finally:
        for name, buffer, version, copy in copies:
            if buffer._version != version:
                with torch.no_grad():
                    buffer.copy_(copy)
                changes.written.append(name)
