"""Which network the monitor drives, and which tokenizer reads its ids.

A LightningModule usually keeps its network in ``self.model`` (or deeper: ``self.model.module``), and that
child, not the LightningModule, holds the context length, the vocabulary and the cache protocol. With
``model_attr=None`` the monitor picks:

1. the LightningModule itself, when it has a cache protocol or advertises a context length or a vocabulary
   (its own attributes or ``config``);
2. else its one language-model child: the shallowest submodule (layers in a ``ModuleList``, ``ModuleDict`` or
   ``Sequential`` are never candidates) that is a transformers model, has a cache protocol, or advertises a
   context or a vocabulary. Two such children are an error naming both and ``model_attr``;
3. else, for a LightningModule that defines no ``forward`` of its own (its ``training_step`` calls the network),
   the one child that holds all of its parameters (the others hold none: a loss, a metric): that child's output
   is the logits, whatever it advertises;
4. else the LightningModule.

The child found is what is called, unless the LightningModule has parameters outside it (an output head of its
own): then its ``forward`` is the model, called the plain way, and the child only tells the context and the
vocabulary (see `lightning_gen.monitor.plan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_gen.decoding.adapters import advertises, detect_protocol
from lightning_gen.text.tokenization import LoadedTokenizer, load_tokenizer

__all__ = ["Network", "find_network", "find_tokenizer"]

_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)


def _unwrap(module: Any) -> Any:
    # A compiled module would recompile for every new sequence length: sample the original.
    compiled = isinstance(module, torch._dynamo.eval_frame.OptimizedModule)
    return getattr(module, "_orig_mod", module) if compiled else module


def _is_language_model(module: nn.Module) -> bool:
    protocol, warning = detect_protocol(module)
    return protocol != "plain" or warning is not None or advertises(module)


def _candidates(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    found = []
    for name, child in module.named_children():
        if isinstance(child, _CONTAINERS):
            continue
        path = f"{prefix}.{name}"
        child = _unwrap(child)
        if _is_language_model(child):
            found.append((path, child))
        else:
            found.extend(_candidates(child, path))
    return found


def _defines_forward(module: nn.Module) -> bool:
    """Whether ``module``'s class (not `nn.Module` or Lightning's base) has a ``forward`` of its own."""
    owner = next(c for c in type(module).__mro__ if "forward" in vars(c))
    return owner is not nn.Module and not owner.__module__.startswith(("lightning.", "pytorch_lightning."))


def _sole_owner(root: nn.Module) -> tuple[nn.Module, str] | None:
    """For a LightningModule without a ``forward`` of its own: the child that holds every parameter (the others
    hold none), through wrappers without a ``forward`` (``self.model.module``), with its path; else None."""
    module, path = root, "pl_module"
    while not _defines_forward(module) and next(module.parameters(recurse=False), None) is None:
        holders = [(n, c) for n, c in module.named_children() if next(c.parameters(), None) is not None]
        if len(holders) != 1 or isinstance(holders[0][1], _CONTAINERS):
            return None
        name, child = holders[0]
        module, path = _unwrap(child), f"{path}.{name}"
        if _defines_forward(module):
            return module, path
    return None


def _resolve_attr(root: nn.Module, dotted: str) -> Any:
    obj: Any = root
    for part in dotted.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"`model_attr`={dotted!r}: {type(obj).__name__} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Network:
    """The network found in a LightningModule.

    Attributes:
        called: The module the monitor calls.
        holder: The module that holds the context length, vocabulary and cache protocol (often ``called``).
        name: Where ``called`` is, e.g. ``"pl_module.model"``.
        holder_name: Where ``holder`` is.
    """

    called: Any
    holder: Any
    name: str
    holder_name: str


def find_network(pl_module: nn.Module, model_attr: str | None = None) -> Network:
    """The network the monitor drives in ``pl_module`` (see the module docstring for the order).

    Raises:
        ValueError: ``model_attr`` names no attribute, or two children are language models.
        TypeError: ``model_attr`` names something that is not callable.

    Example::

        >>> class GPT(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.block_size = 32
        ...         self.head = nn.Linear(4, 4)
        >>> class Module(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.model = GPT()
        >>> find_network(Module()).name
        'pl_module.model'
    """
    if model_attr is not None:
        called = _unwrap(_resolve_attr(pl_module, model_attr))
        if not callable(called):
            raise TypeError(f"`model_attr`={model_attr!r} is a {type(called).__name__}, which is not callable")
        name = f"pl_module.{model_attr}"
        return Network(called, called, name, name)
    root = _unwrap(pl_module)
    if _is_language_model(root):
        return Network(root, root, "pl_module", "pl_module")
    found = _candidates(root, "pl_module")
    if not found:
        owner = _sole_owner(root)
        if owner is None:
            return Network(root, root, "pl_module", "pl_module")
        child, path = owner
        return Network(child, child, path, path)
    if len(found) > 1:
        names = ", ".join(f"`{path}` ({type(m).__name__})" for path, m in found)
        raise ValueError(
            f"GenerationMonitor found several language models in the LightningModule: {names}; set `model_attr` "
            f"to the one to sample (e.g. model_attr={found[0][0].removeprefix('pl_module.')!r})"
        )
    path, child = found[0]
    inside = {id(p) for p in child.parameters()}
    if any(id(p) not in inside for p in root.parameters()):
        return Network(root, child, "pl_module", path)  # the LightningModule's forward adds layers of its own
    return Network(child, child, path, path)


def find_tokenizer(tokenizer: Any, trainer: Any, pl_module: Any) -> LoadedTokenizer:
    """The tokenizer a round decodes with: the monitor's ``tokenizer`` argument, else ``pl_module.tokenizer``, else
    ``trainer.datamodule.tokenizer``.

    Raises:
        ValueError: None of them is set.
    """
    if tokenizer is not None:
        return load_tokenizer(tokenizer)
    for owner, name in ((pl_module, "pl_module.tokenizer"), (trainer.datamodule, "trainer.datamodule.tokenizer")):
        found = getattr(owner, "tokenizer", None) if owner is not None else None
        if found is not None:
            return load_tokenizer(found, argument=name)
    raise ValueError(
        "`tokenizer` is None and neither `pl_module.tokenizer` nor `trainer.datamodule.tokenizer` is set; "
        "pass `tokenizer=` (an object with encode/decode, or a path)"
    )
