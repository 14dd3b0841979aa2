"""The plan of a run: what the monitor calls, within which limits, decided once and used as it is by every round.

`settle_target` decides at ``setup`` what a monitor calls (the network, the adapter that drives it) and its
context, from the arguments and what the network advertises; `settle_plan` adds what sampling needs (the
generation configuration merged and validated once, the pad and EOS ids). The probe at the start of fit then
verifies and completes it (`lightning_gen.monitor.probe`): the context where nothing advertises one, the vocabulary
the logits and the tokenizer both cover, how prompts may share a batch, whether samples can be scored. Each value
keeps where it came from, and `describe` prints it in the setup line.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn
from transformers import GenerationConfig

from lightning_gen.decoding.adapters import (
    ModelAdapter,
    advertised_context,
    advertised_vocab,
    require_compilable,
    resolve_adapter,
)
from lightning_gen.decoding.adapters.resolve import protocol_name
from lightning_gen.decoding.batching import BatchPolicy
from lightning_gen.decoding.config import SettledConfig, settle_config
from lightning_gen.monitor.network import Network
from lightning_gen.monitor.tokenized_prompts import prompt_budget
from lightning_gen.text.tokenization import LoadedTokenizer, decodable_ids

__all__ = ["Plan", "Target", "describe", "greedy_of", "model_vocab", "settle_plan", "settle_target", "settle_vocab"]


@dataclass(frozen=True)
class Target:
    """What a monitor calls and within which context.

    Attributes:
        network: The network found in the LightningModule.
        adapter: How it is called (its ``context_length`` is `context`).
        context: The longest sequence it takes, or None when unknown.
        context_source: Where `context` came from: ``"`context_length`"``, ``"`config.block_size` of
            `pl_module.model`"``, ``"found by probing"``, or ``"unknown"``.
    """

    network: Network
    adapter: ModelAdapter
    context: int | None
    context_source: str

    def with_context(self, context: int, source: str) -> Target:
        """The same target with a context found later (by the probe); the adapter crops to it from now on."""
        self.adapter.context_length = context
        return replace(self, context=context, context_source=source)

    def runner_for(self, model: nn.Module, *, use_cache: bool = True) -> ModelAdapter:
        """The adapter for ``model``: the target's for the network; a sharded round that calls another module
        (FSDP1's root, to gather) gets that module's own, within the target's context."""
        if model is self.network.called:
            return self.adapter
        return resolve_adapter(model, None, use_cache=use_cache, context_length=self.context)


def _advertised(network: Network, pl_module: Any, find: Any) -> tuple[int, str] | None:
    """A size the network advertises, else the LightningModule (its attributes, then its ``hparams``)."""
    owners = [(network.holder, network.holder_name), (network.called, network.name), (pl_module, "pl_module"),
              (getattr(pl_module, "hparams", None), "pl_module.hparams")]
    for owner, name in owners:
        found = find(owner) if owner is not None else None
        if found is not None:
            return found[0], f"`{found[1]}` of `{name}`"
    return None


def settle_target(
    pl_module: nn.Module,
    network: Network,
    *,
    adapter: ModelAdapter | type[ModelAdapter] | str | None,
    use_cache: bool,
    context_length: int | None,
    compile: bool = False,  # noqa: A002  (torch.compile's word)
) -> Target:
    """Build the adapter for ``network`` and settle its context: ``context_length``, else what the network (or the
    LightningModule) advertises, else unknown until the probe.

    Raises:
        ValueError: ``compile`` for a network without a static KV cache, or a bad ``adapter`` name.
    """
    if isinstance(adapter, ModelAdapter):
        runner = adapter
    else:
        # A LightningModule whose forward adds its own layers is called the plain way, whatever its child holds.
        given = adapter if adapter is not None or network.holder is network.called else "plain"
        runner = resolve_adapter(network.called, given, use_cache=use_cache, context_length=context_length)
    if compile:
        require_compilable(runner)
    found = _advertised(network, pl_module, advertised_context)
    if context_length is not None:
        context, source = context_length, "`context_length`"
    elif runner.context_length is not None and (found is None or found[0] != runner.context_length):
        context, source = runner.context_length, f"the {protocol_name(runner)} protocol"  # gpt-fast's block_size
    else:
        context, source = found if found is not None else (None, "unknown")
    runner.context_length = context
    return Target(network, runner, context, source)


def model_vocab(network: Network, pl_module: Any) -> tuple[int, str] | None:
    """The vocabulary the network advertises and where (``vocab_size`` / ``padded_vocab_size``), or None."""
    return _advertised(network, pl_module, advertised_vocab)


def greedy_of(settled: SettledConfig) -> SettledConfig:
    """The same configuration without sampling (and without the sampling-only fields HF would warn about)."""
    greedy = copy.deepcopy(settled.config)
    greedy.do_sample = False
    greedy.num_return_sequences = 1
    for name in ("temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff"):
        setattr(greedy, name, None)
    return replace(settled, config=greedy)


@dataclass(frozen=True)
class Plan:
    """What every round of `GenerationMonitor` uses as it is: settled at ``setup``, verified by the probe.

    Attributes:
        target: What is called, and its context.
        settled: The generation configuration, merged (the call's fields, the model's ``generation_config``, HF's
            defaults) and validated once; its ``pad_id`` pads batches and fills ended rows.
        greedy: The same without sampling, for ``also_greedy``; else None.
        vocab: The ids a round samples, ``[0, vocab)``; None until the probe when nothing says it at setup.
        vocab_source: Where `vocab` came from.
        policy: How prompts share a batch (`BatchPolicy`), asked of the model by the probe.
        score: Whether samples are scored (the model returns logits for every position).
        why_not_scored: Why not, when `score` is False although scoring was asked for.
        watched: Buffers the probe saw a round write into, put back after every round.
    """

    target: Target
    settled: SettledConfig
    greedy: SettledConfig | None
    vocab: int | None
    vocab_source: str
    policy: BatchPolicy = "pad"
    score: bool = False
    why_not_scored: str | None = None
    watched: frozenset[str] = field(default_factory=frozenset)

    @property
    def adapter(self) -> ModelAdapter:
        return self.target.adapter

    @property
    def context(self) -> int | None:
        return self.target.context

    def budget(self, target: Target | None = None) -> int | None:
        """The most prompt tokens that fit the context of ``target`` (the plan's by default), `prompt_budget`."""
        target = target or self.target
        return prompt_budget(target.context, self.settled.config, needs_room=target.adapter.needs_room_for_new_tokens)


def settle_plan(
    target: Target,
    tokenizer: LoadedTokenizer,
    generation: dict[str, Any],
    *,
    also_greedy: bool,
) -> Plan:
    """The plan before the probe: the configuration (the tokenizer's EOS and pad ids where ``generation`` names
    none, the model's ``generation_config`` under it) merged and validated once; the vocabulary is the probe's.

    Raises:
        ValueError: ``stop_strings`` without a Hugging Face tokenizer, or a configuration the model's own defaults
            make invalid.
    """
    fields = dict(generation)
    if fields.get("eos_token_id") is None and tokenizer.eos_token_id is not None:
        fields["eos_token_id"] = tokenizer.eos_token_id
    if fields.get("pad_token_id") is None and tokenizer.pad_token_id is not None:
        fields["pad_token_id"] = tokenizer.pad_token_id
    if fields.get("stop_strings") and tokenizer.hf_tokenizer is None:
        raise ValueError("`generation.stop_strings` needs a Hugging Face tokenizer; this tokenizer is not one")
    own = getattr(target.network.called, "generation_config", None)
    settled = settle_config(GenerationConfig(**fields), {},
                            model_generation_config=own if isinstance(own, GenerationConfig) else None)
    return Plan(target, settled, greedy_of(settled) if also_greedy else None, vocab=None, vocab_source="unknown")


def settle_vocab(
    *, logits: int, model: tuple[int, str] | None, tokenizer: LoadedTokenizer, explicit: int | None
) -> tuple[int, str]:
    """The ids a round may sample, ``[0, n)``, and where ``n`` came from: ``explicit`` (``vocab_size=``), else the
    smallest of the logits the model returns, the vocabulary it advertises and the ids the tokenizer decodes (its
    declared size, else found by asking its ``decode``): a padded vocabulary's extra logits decode to nothing.

    Example::

        >>> chars = LoadedTokenizer(encode_fn=list, decode_fn=str, vocab_size=65)
        >>> settle_vocab(logits=128, model=None, tokenizer=chars, explicit=None)
        (65, "the tokenizer's size, below the model's 128 logits")
        >>> settle_vocab(logits=50304, model=(50257, "`config.vocab_size` of `pl_module.model`"),
        ...              tokenizer=chars, explicit=100)
        (100, '`vocab_size`')
    """
    if explicit is not None:
        return explicit, "`vocab_size`"
    limit, why = logits, f"{logits} logits"
    if model is not None and model[0] < logits:
        limit, why = model[0], f"{model[1]} ({model[0]} of {logits} logits)"
    decodable = decodable_ids(tokenizer, below=limit)
    if decodable >= limit:
        return limit, f"the model's {why}"
    how = ("the tokenizer's size" if tokenizer.vocab_size is not None
           else "the ids the tokenizer's `decode` accepts, found by probing")
    return decodable, f"{how}, below the model's {why}"


def describe(plan: Plan, *, scoring_asked: bool) -> str:
    """The line printed once the probe has verified the plan: what is sampled, how, and within which limits."""
    network, target = plan.target.network, plan.target
    held = "" if network.holder is network.called else f"; context and vocabulary from `{network.holder_name}`"
    context = f"context {target.context} ({target.context_source})" if target.context else "context unknown"
    batching = {"pad": "prompts left-padded into batches", "group": "prompts batched by length",
                "single": "one prompt per call"}[plan.policy]
    scored = "scored" if plan.score else f"not scored ({plan.why_not_scored})" if scoring_asked else "not scored"
    return (f"GenerationMonitor: sampling `{network.name}` ({type(network.called).__name__}, "
            f"{protocol_name(target.adapter)} protocol{held}); {context}, vocabulary {plan.vocab} "
            f"({plan.vocab_source}); {batching}; {scored}")
