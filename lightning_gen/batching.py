"""Prompts of different lengths: pad where the model can mask, group by length where it cannot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from lightning_gen.adapters import AdapterName, ModelAdapter, resolve_adapter
from lightning_gen.generation import generate

__all__ = [
    "BatchPlan",
    "complete_batch",
    "generate_completions",
    "left_pad",
    "plan_batches",
    "plan_completions",
    "setting",
    "trim_after_eos",
]


def setting(name: str, model: nn.Module, generation_config: GenerationConfig | None, kwargs: dict[str, Any]) -> Any:
    """A field's value with `generate`'s precedence: call kwargs, then the config passed, then the model's."""
    if kwargs.get(name) is not None:
        return kwargs[name]
    for cfg in (generation_config, getattr(model, "generation_config", None)):
        if isinstance(cfg, GenerationConfig) and getattr(cfg, name, None) is not None:
            return getattr(cfg, name)
    return None


def plan_batches(lengths: Sequence[int], *, batch_size: int, pad: bool) -> list[list[int]]:
    """Indices of the prompts that go together, each list at most ``batch_size`` long.

    With ``pad`` the prompts stay in order; without it each batch holds prompts of one length only (groups in
    order of first appearance), so no model ever sees a pad token it cannot mask.

    Example::

        >>> plan_batches([3, 5, 3, 5, 4], batch_size=8, pad=False)
        [[0, 2], [1, 3], [4]]
    """
    if pad:
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


def trim_after_eos(new_tokens: torch.Tensor, eos: set[int]) -> list[int]:
    """New tokens up to and including the first EOS; HF's padding after it is dropped."""
    out = new_tokens.tolist()
    for i, token in enumerate(out):
        if token in eos:
            return out[: i + 1]
    return out


@dataclass(frozen=True)
class BatchPlan:
    """How one set of prompts is cut into `generate` calls.

    Attributes:
        rows: Token ids of each prompt, 1-D.
        batches: Indices into ``rows`` for each call.
        runner: The adapter every call uses.
        pad_id: Id used for left padding (masked, so its value does not matter to the model).
        eos_ids: EOS ids; completions are cut after the first one.
        copies: ``num_return_sequences``.
    """

    rows: list[torch.Tensor]
    batches: list[list[int]]
    runner: ModelAdapter
    pad_id: int
    eos_ids: set[int]
    copies: int


def plan_completions(
    model: nn.Module,
    prompts: Sequence[Sequence[int] | torch.Tensor],
    generation_config: GenerationConfig | None = None,
    *,
    batch_size: int | None = None,
    adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
    context_length: int | None = None,
    kwargs: dict[str, Any] | None = None,
) -> BatchPlan:
    """Check the prompts and decide the batches, the adapter and the special ids. See `generate_completions`."""
    kwargs = kwargs or {}
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer or None, got {batch_size!r}")
    rows = []
    for i, prompt in enumerate(prompts):
        ids = torch.as_tensor(prompt, dtype=torch.long).reshape(-1)
        if ids.numel() == 0:
            raise ValueError(f"`prompts[{i}]` is empty; every prompt needs at least one token")
        rows.append(ids)
    if not rows:
        raise ValueError("`prompts` is empty")
    use_cache = setting("use_cache", model, generation_config, kwargs)
    runner = resolve_adapter(model, adapter, use_cache=use_cache is not False, context_length=context_length)
    eos = setting("eos_token_id", model, generation_config, kwargs)
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    pad = setting("pad_token_id", model, generation_config, kwargs)
    batches = plan_batches([len(r) for r in rows], batch_size=batch_size or len(rows), pad=runner.supports_attention_mask)
    return BatchPlan(rows, batches, runner, pad if pad is not None else (min(eos_ids) if eos_ids else 0), eos_ids,
                     setting("num_return_sequences", model, generation_config, kwargs) or 1)


def complete_batch(
    model: nn.Module,
    plan: BatchPlan,
    batch: Sequence[int],
    generation_config: GenerationConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> list[list[int]]:
    """One `generate` call for the prompts ``batch`` of ``plan``; each output row's new tokens, cut after EOS."""
    ids, mask = left_pad([plan.rows[i] for i in batch], plan.pad_id)
    mask_arg = mask if plan.runner.supports_attention_mask else None
    out = generate(model, ids, generation_config, attention_mask=mask_arg, generator=generator, adapter=plan.runner,
                   **kwargs)
    return [trim_after_eos(row, plan.eos_ids) for row in out[:, ids.shape[1]:].cpu()]


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

    Models that take an attention mask (transformers models) get left-padded batches; for all others prompts
    are grouped by length, and each group is one `generate` call, so results equal running each group alone
    with the same generator passed along in order.

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
    plan = plan_completions(model, prompts, generation_config, batch_size=batch_size, adapter=adapter,
                            context_length=context_length, kwargs=kwargs)
    results: list[list[list[int]]] = [[] for _ in plan.rows]
    for batch in plan.batches:
        completions = complete_batch(model, plan, batch, generation_config, generator=generator, **kwargs)
        for row, completion in enumerate(completions):
            results[batch[row // plan.copies]].append(completion)
    return [completion for per_prompt in results for completion in per_prompt]
