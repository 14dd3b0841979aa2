"""Which network the monitor drives, and the context and vocabulary it samples within.

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
vocabulary. The ids sampled are those both the logits and the tokenizer cover: ``min(model vocabulary,
tokenizer vocabulary)``, or the monitor's ``vocab_size=``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_gen.decoding.adapters import (
    GptFastAdapter,
    HFAdapter,
    LitGPTAdapter,
    ModelAdapter,
    PlainAdapter,
    TorchtuneAdapter,
    advertises,
    detect_protocol,
    find_context_length,
    find_vocab_size,
    require_compilable,
    resolve_adapter,
)
from lightning_gen.text.tokenization import LoadedTokenizer, load_tokenizer

__all__ = ["Network", "Sampling", "find_network", "find_tokenizer", "sampling_vocab", "settle"]

_ADAPTER_NAMES = {"plain": PlainAdapter, "litgpt": LitGPTAdapter, "gpt-fast": GptFastAdapter,
                  "torchtune": TorchtuneAdapter, "transformers": HFAdapter}

_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)


def _unwrap(module: Any) -> Any:
    # A compiled module would recompile for every new sequence length: sample the original.
    return getattr(module, "_orig_mod", module) if isinstance(module, torch._dynamo.eval_frame.OptimizedModule) else module


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


def _hparam(pl_module: Any, names: tuple[str, ...]) -> int | None:
    hparams = getattr(pl_module, "hparams", None)
    for name in names:
        value = hparams.get(name) if isinstance(hparams, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def model_vocab(network: Network, pl_module: Any) -> int | None:
    """The number of logits the network advertises: its own, its ``config``'s, or the LightningModule's
    ``hparams`` (``vocab_size``, ``padded_vocab_size``)."""
    for owner in (network.holder, network.called, pl_module):
        found = find_vocab_size(owner)
        if found is not None:
            return found
    return _hparam(pl_module, ("vocab_size", "padded_vocab_size"))


def model_context(network: Network, pl_module: Any) -> int | None:
    """The context length the network advertises, else the LightningModule's (attributes or ``hparams``)."""
    for owner in (network.holder, network.called, pl_module):
        found = find_context_length(owner)
        if found is not None:
            return found
    return _hparam(pl_module, ("max_seq_length", "block_size", "context_length", "max_seq_len", "sequence_len"))


def sampling_vocab(model: int | None, tokenizer: int | None, explicit: int | None = None) -> int | None:
    """The ids that may be sampled, ``[0, n)``: ``explicit`` when given, else the smaller of what the model's
    logits and the tokenizer cover (a padded vocabulary's extra logits decode to nothing).

    Example::

        >>> sampling_vocab(50304, 50257), sampling_vocab(None, 65), sampling_vocab(128, 65, explicit=100)
        (50257, 65, 100)
    """
    if explicit is not None:
        return explicit
    known = [n for n in (model, tokenizer) if n is not None]
    return min(known) if known else None


def describe(network: Network, *, protocol: str, context: int | None, vocab: int | None, model: int | None,
             tokenizer: int | None) -> str:
    """The line printed once at `setup`: what is sampled, how it is called, and within which limits."""
    held = "" if network.holder is network.called else f"; context and vocabulary from `{network.holder_name}`"
    sizes = ", ".join(f"{label} {n}" for label, n in (("model", model), ("tokenizer", tokenizer)) if n is not None)
    return (
        f"GenerationMonitor: sampling `{network.name}` ({type(network.called).__name__}, {protocol} protocol{held}); "
        f"context {context if context is not None else 'unknown'}, vocabulary {vocab if vocab is not None else 'unknown'}"
        + (f" ({sizes})" if sizes else "")
    )


@dataclass(frozen=True)
class Sampling:
    """What `settle` decided: the adapter that drives the network, and the limits the round samples within."""

    network: Network
    adapter: ModelAdapter
    context: int | None
    vocab: int | None
    line: str


def settle(
    pl_module: nn.Module,
    network: Network,
    *,
    adapter: ModelAdapter | type[ModelAdapter] | str | None,
    use_cache: bool,
    context_length: int | None,
    vocab_size: int | None,
    tokenizer_vocab: int | None,
    compile: bool = False,  # noqa: A002  (torch.compile's word)
) -> Sampling:
    """Build the adapter for ``network`` and settle the context and the sampling vocabulary.

    Raises:
        ValueError: ``compile`` for a network without a static KV cache, or a bad ``adapter`` name.
    """
    if isinstance(adapter, ModelAdapter):
        runner = adapter
        if context_length is not None:
            runner.context_length = context_length
    else:
        # A LightningModule whose forward adds its own layers is called the plain way, whatever its child holds.
        given = adapter if adapter is not None or network.holder is network.called else "plain"
        runner = resolve_adapter(network.called, given, use_cache=use_cache, context_length=context_length)
    if compile:
        require_compilable(runner)
    model = model_vocab(network, pl_module)
    vocab = sampling_vocab(model, tokenizer_vocab, explicit=vocab_size)
    if runner.vocab_size is None:
        runner.vocab_size = vocab
    context = runner.context_length or model_context(network, pl_module)
    protocol = {v: k for k, v in _ADAPTER_NAMES.items()}.get(type(runner), type(runner).__name__)
    line = describe(network, protocol=protocol, context=context, vocab=runner.vocab_size, model=model,
                    tokenizer=tokenizer_vocab)
    return Sampling(network, runner, context, runner.vocab_size, line)


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
