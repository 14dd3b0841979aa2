"""Prompts of different lengths: pad where the model can mask, group by length where it cannot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from lightning_gen._checks import check_int
from lightning_gen.decoding.adapters import AdapterName, ModelAdapter, resolve_adapter
from lightning_gen.decoding.config import eos_id_set, generation_fields, merge_config
from lightning_gen.decoding.generation import generate

__all__ = ["BatchPlan", "complete_batch", "generate_completions", "plan_batches", "plan_completions"]


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


def _left_pad(rows: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    eos_ids: frozenset[int]
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
    check_int("batch_size", batch_size, allow_none=True)
    rows = []
    for i, prompt in enumerate(prompts):
        ids = torch.as_tensor(prompt, dtype=torch.long).reshape(-1)
        if ids.numel() == 0:
            raise ValueError(f"`prompts[{i}]` is empty; every prompt needs at least one token")
        rows.append(ids)
    if not rows:
        raise ValueError("`prompts` is empty")
    fields = {k: v for k, v in (kwargs or {}).items() if k in generation_fields()}
    model_config = getattr(model, "generation_config", None)
    cfg = merge_config(generation_config, fields,
                       model_generation_config=model_config if isinstance(model_config, GenerationConfig) else None)
    runner = resolve_adapter(model, adapter, use_cache=cfg.use_cache is not False, context_length=context_length)
    eos_ids = eos_id_set(cfg.eos_token_id)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else (min(eos_ids) if eos_ids else 0)
    batches = plan_batches([len(r) for r in rows], batch_size=batch_size or len(rows), pad=runner.supports_attention_mask)
    return BatchPlan(rows, batches, runner, pad, eos_ids, cfg.num_return_sequences or 1)


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
    ids, mask = _left_pad([plan.rows[i] for i in batch], plan.pad_id)
    mask_arg = mask if plan.runner.supports_attention_mask else None
    out = generate(model, ids, generation_config, attention_mask=mask_arg, generator=generator, adapter=plan.runner,
                   **kwargs)
    out = getattr(out, "sequences", out)  # `return_dict_in_generate`: the tokens of HF's output object
    return [_trim_after_eos(row, plan.eos_ids) for row in out[:, ids.shape[1]:].cpu()]


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
