"""Prompts of different lengths in batches whose every completion is what its prompt gets alone.

A model that takes an attention mask gets left-padded batches; one that cannot (or whose state ignores the mask,
as RWKV's and xLSTM's recurrent states do) gets batches of prompts of one length; one whose batched decoding
differs from decoding one prompt (RWKV's step-by-step state at batch > 1 in transformers 5.25) gets one prompt per
call. Which of these a model needs is asked of the model itself (`batching_policy`), not guessed from its class.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import GenerationConfig

from lightning_gen._checks import check_int
from lightning_gen.decoding.adapters import AdapterName, ModelAdapter, compute_dtype, model_device, resolve_adapter
from lightning_gen.decoding.config import SettledConfig, generation_fields, settle_config, unknown_field_error
from lightning_gen.decoding.generation import generate_settled

__all__ = ["BatchPlan", "BatchPolicy", "batching_policy", "generate_completions", "make_plan", "plan_batches",
           "plan_completions"]

#: How prompts may share a call: ``"pad"`` (left-padded with a mask), ``"group"`` (prompts of one length),
#: ``"single"`` (one prompt per call).
BatchPolicy = Literal["pad", "group", "single"]


def plan_batches(lengths: Sequence[int], *, batch_size: int, policy: BatchPolicy) -> list[list[int]]:
    """Indices of the prompts that go together, each list at most ``batch_size`` long.

    ``"pad"`` keeps the prompts in order; ``"group"`` puts prompts of one length only in a batch (groups in order of
    first appearance), so no model sees a pad token it cannot mask; ``"single"`` makes one batch per prompt.

    Example::

        >>> plan_batches([3, 5, 3, 5, 4], batch_size=8, policy="group")
        [[0, 2], [1, 3], [4]]
    """
    if policy == "single":
        return [[i] for i in range(len(lengths))]
    if policy == "pad":
        groups = [list(range(len(lengths)))]
    else:
        by_length: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            by_length.setdefault(n, []).append(i)
        groups = list(by_length.values())
    return [group[i:i + batch_size] for group in groups for i in range(0, len(group), batch_size)]


def left_pad(rows: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D id tensors into a left-padded batch `(B, T)` and its attention mask `(B, T)`."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
    return ids, mask


def _trim_after_eos(new_tokens: torch.Tensor, eos: frozenset[int]) -> list[int]:
    """New tokens up to and including the first EOS; HF's padding after it is dropped."""
    out = new_tokens.tolist()
    for i, token in enumerate(out):
        if token in eos:
            return out[: i + 1]
    return out


# ----------------------------------------------------------------------------------- asking the model how to batch
_CHECK_STEPS = 3
# One policy per model and adapter kind: how a network treats a mask and a batch is its structure, not its weights.
_POLICIES: weakref.WeakKeyDictionary[nn.Module, dict[type, BatchPolicy]] = weakref.WeakKeyDictionary()


def _greedy_logits(model: nn.Module, runner: ModelAdapter, settled: SettledConfig, rows: Sequence[torch.Tensor],
                   pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy tokens `(B, n)` and raw logits `(B, n, V)` of a few steps of ``rows`` in one call (left-padded)."""
    ids, mask = left_pad(rows, pad_id)
    padded = len({len(r) for r in rows}) > 1
    out = generate_settled(model, ids, settled, runner, attention_mask=mask if padded else None)
    return out.sequences[:, ids.shape[1]:].cpu(), torch.stack(out.logits, dim=1).float().cpu()


def _agree(batched: tuple[torch.Tensor, torch.Tensor], alone: tuple[torch.Tensor, torch.Tensor], rtol: float) -> bool:
    """Whether one row's logits in a batch are its logits alone, step by step while its greedy tokens agree (after a
    near-tie that went the other way, the inputs differ and so may the logits)."""
    (tokens, logits), (own_tokens, own_logits) = batched, alone
    for step in range(own_logits.shape[0]):
        scale = max(1.0, float(own_logits[step].abs().max()))
        if not torch.allclose(logits[step], own_logits[step], rtol=0.0, atol=rtol * scale):
            return False
        if tokens[step] != own_tokens[step]:
            return True
    return True


def batching_policy(model: nn.Module, runner: ModelAdapter, rows: Sequence[torch.Tensor], *,
                    pad_id: int = 0) -> BatchPolicy:
    """How prompts may share a `generate` call with ``runner``, found by asking the model (once per model).

    A few greedy steps of two of ``rows`` in one call are compared with each alone: a left-padded pair (a model
    that takes a mask) must give each row its own logits, or prompts are grouped by length; a pair of one length must
    too, or each prompt gets a call of its own. The logits must agree within what the compute dtype rounds (1e-3 of
    their scale in float32, 3e-2 in 16-bit): a state that takes in pad tokens or mixes rows is off by far more.

    Example::

        >>> model = nn.Embedding(10, 10)                      # ids (B, T) -> logits (B, T, V)
        >>> batching_policy(model, resolve_adapter(model), [torch.tensor([1, 2]), torch.tensor([3])])
        'group'
    """
    known = _POLICIES.get(model, {}).get(type(runner))
    if known is not None:
        return known
    longest = max(rows, key=len)
    shorter = min(rows, key=len)
    rtol = 1e-3 if compute_dtype(model, model_device(model, torch.device("cpu"))) == torch.float32 else 3e-2
    settled = settle_config(None, dict(max_new_tokens=_CHECK_STEPS, do_sample=False, eos_token_id=None,
                                       pad_token_id=pad_id, output_logits=True, return_dict_in_generate=True))

    seen: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def alone(row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = tuple(row.tolist())
        if key not in seen:
            tokens, logits = _greedy_logits(model, runner, settled, [row], pad_id)
            seen[key] = tokens[0], logits[0]
        return seen[key]

    def shares_well(pair: list[torch.Tensor]) -> bool:
        tokens, logits = _greedy_logits(model, runner, settled, pair, pad_id)
        return all(_agree((tokens[i], logits[i]), alone(row), rtol) for i, row in enumerate(pair))

    # A second prompt as long as the longest (its tokens rolled), so that one length meets itself in a batch.
    pair = [longest, torch.roll(longest, 1)]
    policy: BatchPolicy = "group" if shares_well(pair) else "single"
    can_pad = runner.supports_attention_mask
    if policy == "group" and can_pad and len(shorter) < len(longest):
        policy = "pad" if shares_well([shorter, longest]) else "group"
    elif policy == "group" and can_pad:  # rows of one length: padding untried, so asked again for mixed lengths
        return policy
    _POLICIES.setdefault(model, {})[type(runner)] = policy
    return policy


# ----------------------------------------------------------------------------------- the plan and its calls
@dataclass(frozen=True)
class BatchPlan:
    """How one set of prompts is cut into `generate` calls, decided once for any number of rounds.

    Attributes:
        rows: Token ids of each prompt, 1-D.
        batches: Indices into ``rows`` for each call.
        runner: The adapter every call uses.
        settled: The configuration every call uses (merged and validated once).
        policy: How the prompts share calls (see `BatchPolicy`).
    """

    rows: list[torch.Tensor]
    batches: list[list[int]]
    runner: ModelAdapter
    settled: SettledConfig
    policy: BatchPolicy

    @property
    def copies(self) -> int:
        """``num_return_sequences``: completions per prompt."""
        return self.settled.config.num_return_sequences or 1

    def complete(
        self,
        model: nn.Module,
        batch: Sequence[int],
        *,
        settled: SettledConfig | None = None,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> list[list[int]]:
        """One `generate` call for the prompts ``batch``; each output row's new tokens, cut after EOS.

        Args:
            settled: Another configuration for this call (the greedy one beside a sampled round); the plan's when
                None.
            options: `generate`'s other options (``logits_processor``, ``all_finished`` ...).
        """
        settled = settled or self.settled
        ids, mask = left_pad([self.rows[i] for i in batch], settled.pad_id if settled.pad_id is not None else 0)
        mask_arg = mask if self.policy == "pad" else None
        out = generate_settled(model, ids, settled, self.runner, attention_mask=mask_arg, generator=generator,
                               **options)
        out = getattr(out, "sequences", out)  # `return_dict_in_generate`: the tokens of HF's output object
        return [_trim_after_eos(row, settled.eos_ids) for row in out[:, ids.shape[1]:].cpu()]

    def completions(
        self, model: nn.Module, *, numbers: Sequence[int] | None = None, generator: Any = None,
        settled: SettledConfig | None = None, **options: Any,
    ) -> Iterator[tuple[int, int, list[int]]]:
        """Run the batches ``numbers`` (all by default) in order: ``(prompt, copy, new tokens)`` for each output row.

        Args:
            generator: One `torch.Generator` shared by the calls in order, or a function of the batch number that
                gives each batch its own (the monitor's rounds: the same noise for a batch whichever process runs it).
            settled, options: As for `complete`.
        """
        settled = settled or self.settled
        copies = settled.config.num_return_sequences or 1
        for number, batch in enumerate(self.batches):
            if numbers is not None and number not in numbers:
                continue
            noise = generator(number) if callable(generator) else generator
            for row, completion in enumerate(self.complete(model, batch, settled=settled, generator=noise, **options)):
                yield batch[row // copies], row % copies, completion


def plan_completions(
    model: nn.Module,
    prompts: Sequence[Sequence[int] | torch.Tensor],
    generation_config: GenerationConfig | None = None,
    *,
    batch_size: int | None = None,
    adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
    context_length: int | None = None,
    kwargs: dict[str, Any] | None = None,
    policy: BatchPolicy | None = None,
) -> BatchPlan:
    """Check the prompts and decide the configuration, the adapter and the batches. See `generate_completions`.

    Args:
        policy: How prompts share calls, when the caller has settled it; else `batching_policy` asks the model.
    """
    check_int("batch_size", batch_size, allow_none=True)
    rows = []
    for i, prompt in enumerate(prompts):
        ids = torch.as_tensor(prompt, dtype=torch.long).reshape(-1)
        if ids.numel() == 0:
            raise ValueError(f"`prompts[{i}]` is empty; every prompt needs at least one token")
        rows.append(ids)
    if not rows:
        raise ValueError("`prompts` is empty")
    model_config = getattr(model, "generation_config", None)
    own = model_config if isinstance(model_config, GenerationConfig) else None
    settled = settle_config(generation_config, dict(kwargs or {}), model_generation_config=own)
    runner = resolve_adapter(model, adapter, use_cache=settled.use_cache,
                             context_length=context_length)
    if policy is None:
        pad_id = settled.pad_id if settled.pad_id is not None else 0
        policy = batching_policy(model, runner, rows, pad_id=pad_id) if len(rows) > 1 and batch_size != 1 else "pad"
    return make_plan(rows, runner, settled, policy=policy, batch_size=batch_size)


def make_plan(rows: Sequence[torch.Tensor], runner: ModelAdapter, settled: SettledConfig, *, policy: BatchPolicy,
              batch_size: int | None) -> BatchPlan:
    """The `BatchPlan` of prompts ``rows`` (1-D id tensors) whose adapter, configuration and policy are settled."""
    if policy == "pad" and not runner.supports_attention_mask:
        policy = "group"
    batches = plan_batches([len(r) for r in rows], batch_size=batch_size or len(rows), policy=policy)
    return BatchPlan(list(rows), batches, runner, settled, policy)


# `generate`'s options besides the configuration's fields, which `generate_completions` passes to every call.
_CALL_OPTIONS = frozenset({"logits_processor", "stopping_criteria", "tokenizer", "vocab_size", "all_finished",
                           "compile"})


def generate_completions(
    model: nn.Module,
    prompts: Sequence[Sequence[int] | torch.Tensor],
    generation_config: GenerationConfig | None = None,
    *,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
    context_length: int | None = None,
    **kwargs: Any,
) -> list[list[int]]:
    """Complete prompts of any lengths; return each completion's new token ids.

    Each completion is what its prompt gets alone (within float rounding): models that honour an attention mask
    (transformers attention models) get left-padded batches; for others prompts are grouped by length, or run one
    per call where the model's batched decoding differs from one prompt's (see `batching_policy`). Each batch is
    one `generate` call, so results equal running each batch alone with the same generator passed along in order.

    Args:
        model: As for `generate`.
        prompts: Token ids of each prompt (lists or 1-D tensors), at least one token each.
        generation_config: As for `generate`.
        batch_size: Most prompts per `generate` call; None puts all that can go together in one call.
        generator: Source of randomness, shared by the calls in order.
        adapter: As for `generate`.
        context_length: As for `generate`.
        **kwargs: `GenerationConfig` fields and other `generate` options.

    Returns:
        For each prompt (and each of its ``num_return_sequences``, in HF's order), the new tokens up to and
        including the first EOS.

    Example::

        >>> model = nn.Embedding(10, 10)                      # a bigram "model": ids (B, T) -> (B, T, V)
        >>> _ = nn.init.eye_(model.weight)                    # ... that always repeats the last token
        >>> generate_completions(model, [[1, 2], [3]], max_new_tokens=2)
        [[2, 2], [3, 3]]
    """
    fields = {k: v for k, v in kwargs.items() if k in generation_fields()}
    options = {k: v for k, v in kwargs.items() if k not in fields}
    for key in options:
        if key not in _CALL_OPTIONS:
            raise unknown_field_error(key, "generate_completions")
    plan = plan_completions(model, prompts, generation_config, batch_size=batch_size, adapter=adapter,
                            context_length=context_length, kwargs=fields)
    results: list[list[list[int]]] = [[] for _ in plan.rows]
    for prompt, _, completion in plan.completions(model, generator=generator, **options):
        results[prompt].append(completion)
    return [completion for per_prompt in results for completion in per_prompt]
