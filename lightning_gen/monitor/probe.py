"""The sampling probe: at the start of fit, verify the run's plan against the model and complete it, so that what
would fail every round fails before step 1, naming its cause and the argument to set.

Its stages, in order:

1. One teacher-forced forward of a prompt: the output must be logits `(B, T, V)`, `(B, 1, V)` or `(B, V)` as
   floats (else `model_attr`), finite (NaN or inf before training has started is said so), and taken on the
   prompt's ids (ids the model's forward refuses while it runs on id 0: the id, the ids it accepts, the
   tokenizer). Whether it returns every position settles whether samples can be scored.
2. The vocabulary (`lightning_gen.monitor.plan.settle_vocab`); every prompt id and every id of the configuration
   must lie in it (else the id, the size, `vocab_size` and the tokenizer).
3. Each of the user's logits processors on those logits (else `logits_processors[i]` and its class).
4. The round's real shape: the longest prompt completed by every new token (no early EOS) through the round's own
   path. A length the model refuses is measured: the longest it accepts is found by bisection over forward
   lengths; where no context is known it becomes the context ("found by probing") and prompts are cropped to it,
   where one is known the error names ``context_length`` and the length.
5. ``decode`` of the sample (else the tokenizer and `vocab_size`), and its scoring when samples are scored.
6. How prompts may share a batch (`lightning_gen.decoding.batching.batching_policy`).

The whole probe runs under `watched_state`: buffers it wrote into are put back, named once, and watched at every
round after.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from lightning_gen.decoding.adapters import ModelAdapter, model_device, watched_state
from lightning_gen.decoding.adapters.resolve import protocol_name
from lightning_gen.decoding.batching import BatchPolicy, batching_policy, make_plan
from lightning_gen.monitor._failures import PeerFailed
from lightning_gen.monitor.forward_checks import ProbeError, first_forward, longest_accepted
from lightning_gen.monitor.plan import Plan, model_vocab, settle_vocab
from lightning_gen.monitor.round import call_options, decode_sample, runner_for, score_sample
from lightning_gen.text.samples import EncodedPrompts
from lightning_gen.text.tokenization import LoadedTokenizer

__all__ = ["ProbeError", "ProbeResult", "check_vocabulary", "merge_results", "probe"]


@dataclass(frozen=True)
class ProbeResult:
    """What the probe learnt (plain data: it travels between processes).

    Attributes:
        vocab: The ids a round samples, and `vocab_source` where that came from.
        context: The context found by probing, where none was known; else None.
        policy: How prompts share a batch.
        score: Whether samples are scored, and `why_not_scored` why not when asked.
        written: Buffers the probe's round wrote into (put back), by name.
    """

    vocab: int
    vocab_source: str
    context: int | None = None
    policy: BatchPolicy = "pad"
    score: bool = False
    why_not_scored: str | None = None
    written: tuple[str, ...] = ()


def merge_results(results: Sequence[ProbeResult]) -> ProbeResult:
    """One decision from every process's probe: the smallest vocabulary and context, the most cautious batching,
    scoring only where every process can score.

    Example::

        >>> merge_results([ProbeResult(65, "a", policy="pad", score=True), ProbeResult(60, "b", policy="group")])
        ... # doctest: +NORMALIZE_WHITESPACE
        ProbeResult(vocab=60, vocab_source='b', context=None, policy='group', score=False, why_not_scored=None,
                    written=())
    """
    order: tuple[BatchPolicy, ...] = ("pad", "group", "single")
    vocab = min(results, key=lambda r: r.vocab)
    contexts = [r.context for r in results if r.context is not None]
    return ProbeResult(
        vocab=vocab.vocab, vocab_source=vocab.vocab_source, context=min(contexts) if contexts else None,
        policy=max((r.policy for r in results), key=order.index), score=all(r.score for r in results),
        why_not_scored=next((r.why_not_scored for r in results if r.why_not_scored), None),
        written=tuple(sorted({name for r in results for name in r.written})),
    )


def _config_ids(config: GenerationConfig) -> dict[str, list[int]]:
    """Every token id the generation configuration names, by field."""
    found: dict[str, list[int]] = {}

    def flat(value: Any) -> list[int]:
        if value is None:
            return []
        if isinstance(value, int):
            return [value]
        if isinstance(value, Mapping):
            return [i for key in value for i in flat(list(key) if isinstance(key, tuple) else key)]
        return [i for item in value for i in flat(item)]

    for name in ("forced_eos_token_id", "forced_bos_token_id", "bad_words_ids", "suppress_tokens",
                 "begin_suppress_tokens"):
        found[name] = flat(getattr(config, name, None))
    bias = getattr(config, "sequence_bias", None)
    if isinstance(bias, Mapping):
        found["sequence_bias"] = flat(bias)
    elif bias:  # [[ids, bias], ...] as in HF's list form
        found["sequence_bias"] = [i for ids, _ in bias for i in flat(ids)]
    return found


def check_vocabulary(vocab: int, source: str, encoded: EncodedPrompts, config: GenerationConfig) -> None:
    """Every prompt id and every id of the configuration must be in ``[0, vocab)``.

    Raises:
        ProbeError: Naming the prompt or the ``generation`` field, the ids, the vocabulary and where it came from.
    """
    for i, ids in enumerate(encoded.ids):
        bad = sorted({t for t in ids if not 0 <= t < vocab})
        if bad:
            raise ProbeError(f"`prompts[{i}]` {encoded.prompts[i].text!r} encodes to ids {bad[:5]} outside the "
                             f"vocabulary [0, {vocab}) ({source}); does the tokenizer match the model? (set "
                             "`tokenizer`, or `vocab_size`)")
    for name, ids in _config_ids(config).items():
        bad = sorted({t for t in ids if not 0 <= t < vocab})
        if bad:
            raise ProbeError(f"`generation.{name}` holds ids {bad[:5]} outside the vocabulary [0, {vocab}) "
                             f"({source})")


def _first_prompt(model: nn.Module, runner: ModelAdapter, encoded: EncodedPrompts, network: str) -> torch.Tensor:
    """`first_forward` of the shortest prompt of at least two tokens (to see whether every position is returned)."""
    k = min(range(len(encoded.ids)), key=lambda i: (len(encoded.ids[i]) < 2, len(encoded.ids[i])))
    return first_forward(model, runner, encoded.ids[k], named=f"`prompts[{k}]` {encoded.prompts[k].text!r}",
                         activity="sampling", network=network)


def _check_processors(processors: Sequence[Any], encoded: EncodedPrompts, logits: torch.Tensor, vocab: int) -> None:
    """Stage 3: each user processor on the first forward's last logits, so that its failure names it."""
    scores = (logits[:, -1] if logits.dim() == 3 else logits)[:, :vocab].float()  # (1, V)
    ids = torch.tensor([encoded.ids[0]], device=scores.device)
    for i, processor in enumerate(processors):
        try:
            processor(ids, scores.clone())
        except Exception as err:  # noqa: BLE001
            raise ProbeError(f"`logits_processors[{i}]` ({type(processor).__name__}) raised {type(err).__name__}: "
                             f"{err}") from err


def _full_length(plan: Plan) -> Plan:
    """The plan with every new token made (EOS does not end the probe early) and one sequence per prompt."""
    config = copy.copy(plan.settled.config)
    config.num_return_sequences = 1
    if config.max_new_tokens is not None:
        config.min_new_tokens = config.max_new_tokens
    return replace(plan, settled=replace(plan.settled, config=config))


def probe(
    model: nn.Module,
    plan: Plan,
    encoded: EncodedPrompts,
    tokenizer: LoadedTokenizer,
    *,
    pl_module: nn.Module,
    vocab_size: int | None,
    score: bool,
    batch_size: int | None,
    round_options: Mapping[str, Any],
) -> ProbeResult:
    """Verify ``plan`` against ``model`` (the module a round calls) and complete it; see the module docstring.

    Args:
        pl_module: The LightningModule (the vocabulary it advertises, when the network does not).
        vocab_size: The monitor's ``vocab_size`` argument.
        score: Whether samples are to be scored (``log_metrics``).
        batch_size: The rounds' batch size.
        round_options: `call_options`'s keyword arguments (``logits_processors``, ``all_finished``, ``compile``).

    Raises:
        ProbeError: Naming the cause and the argument to set.
        torch.OutOfMemoryError: Running out of memory, which the caller may take as transient.
    """
    network = plan.target.network
    runner = runner_for(model, plan)
    advertised = model_vocab(network, pl_module)
    with watched_state(model) as changes:
        if advertised is not None and vocab_size is None:  # known before any forward: the clearest error
            check_vocabulary(*advertised, encoded, plan.settled.config)
        logits = _first_prompt(model, runner, encoded, network.name)
        every_position = logits.dim() == 3 and logits.shape[1] > 1
        try:
            vocab, source = settle_vocab(logits=logits.shape[-1], model=advertised,
                                         tokenizer=tokenizer, explicit=vocab_size)
        except ValueError as err:
            raise ProbeError(str(err)) from err
        check_vocabulary(vocab, source, encoded, plan.settled.config)
        _check_processors(round_options.get("logits_processors") or (), encoded, logits, vocab)
        plan = replace(plan, vocab=vocab, vocab_source=source)
        found, completion, one = _real_shape(model, plan, encoded, tokenizer, runner, round_options)
        try:
            decode_sample(tokenizer, one, 0, completion, eos_ids=plan.settled.eos_ids)
        except Exception as err:  # noqa: BLE001
            raise ProbeError(f"the tokenizer's `decode` failed with {type(err).__name__}: {err} on ids sampled from "
                             f"the vocabulary [0, {vocab}) ({source}); set `vocab_size` to the ids the tokenizer "
                             "decodes, or pass the tokenizer that matches the model (`tokenizer`)") from err
        scored, why_not = score and every_position, None
        if score and not every_position:
            why_not = "the model returns logits for the last position only (nanoGPT-style)"
        if scored:
            try:
                score_sample(model, one, 0, completion, found if found is not None else plan.target.context,
                             runner)
            except Exception as err:  # noqa: BLE001
                raise ProbeError(f"scoring the probe's sample (teacher-forced, as a scored round does) failed with "
                                 f"{type(err).__name__}: {err}; set `log_metrics=False` to sample without "
                                 "scoring") from err
        policy: BatchPolicy = "pad" if runner.supports_attention_mask else "group"
        if len(encoded.ids) > 1 and batch_size != 1:
            rows = [torch.tensor(ids) for ids in encoded.ids]
            policy = batching_policy(model, runner, rows, pad_id=plan.settled.pad_id or 0)
    return ProbeResult(vocab=vocab, vocab_source=source, context=found, policy=policy, score=scored,
                       why_not_scored=why_not, written=tuple(changes.written))


def _real_shape(model: nn.Module, plan: Plan, encoded: EncodedPrompts, tokenizer: LoadedTokenizer,
                runner: ModelAdapter, round_options: Mapping[str, Any]) -> tuple[int | None, list[int], EncodedPrompts]:
    """Stage 4: the longest and the shortest prompt, each completed by every new token; a refused length measured
    (see `probe`).

    Returns the context found by probing (None when none was needed), and the longest prompt's completion and
    prompt as the probe ran it.
    """
    lengths = [len(ids) for ids in encoded.ids]
    longest, shortest = lengths.index(max(lengths)), lengths.index(min(lengths))
    full = _full_length(plan)
    target, found, first = plan.target, None, None
    options = call_options(full, tokenizer, **round_options)
    device = model_device(model, torch.device("cpu"))
    for k, which in dict.fromkeys([(longest, "the longest prompt"), (shortest, "the shortest prompt")]):
        for attempt in range(2):
            budget = full.budget(target)
            ids = encoded.ids[k][-budget:] if budget is not None else encoded.ids[k]
            batch = make_plan([torch.tensor(ids)], runner, full.settled, policy="single", batch_size=1)
            try:
                completion = batch.complete(model, [0], generator=torch.Generator(device=device).manual_seed(0),
                                            **options)[0]
                break
            except (ProbeError, PeerFailed, torch.OutOfMemoryError):
                raise
            except Exception as err:  # noqa: BLE001 - measured below
                new = full.settled.config.max_new_tokens or 1
                needed = len(ids) + new
                if target.context is not None and not runner.needs_room_for_new_tokens:
                    needed = min(needed, target.context)  # a plain model is cropped to its context
                accepted = longest_accepted(model, runner, ids, needed)
                cause = f"{type(err).__name__}: {err}"
                if accepted >= needed or accepted < 2 or attempt == 1:
                    raise ProbeError(
                        f"the probe (`prompts[{k}]` {encoded.prompts[k].text!r}, {which}, {len(ids)} tokens completed "
                        f"by {new} as a round runs, the {protocol_name(runner)} protocol) failed with {cause}") from err
                if target.context is not None:
                    raise ProbeError(
                        f"the model refuses a sequence of {needed} tokens ({cause}) although its context is "
                        f"{target.context} ({target.context_source}); it takes up to {accepted} (found by probing): "
                        f"set `context_length={accepted}`") from err
                found = accepted
                target = target.with_context(accepted, "found by probing")
                full = replace(full, target=target)
        if first is None:
            references = [encoded.references[k] if encoded.references else None]
            first = completion, EncodedPrompts([encoded.prompts[k]], [ids], [], references)
    return found, first[0], first[1]
