"""Prompts of different lengths: pad where the model can mask, group by length where it cannot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from lightning_gen.adapters import AdapterName, ModelAdapter, resolve_adapter
from lightning_gen.generation import generate

__all__ = ["generate_completions", "plan_batches"]


def _setting(name: str, model: nn.Module, generation_config: GenerationConfig | None, kwargs: dict[str, Any]) -> Any:
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


def _trim(new_tokens: torch.Tensor, eos: set[int]) -> list[int]:
    """New tokens up to and including the first EOS; HF's padding after it is dropped."""
    out = new_tokens.tolist()
    for i, token in enumerate(out):
        if token in eos:
            return out[: i + 1]
    return out


def generate_completions(
    model: nn.Module,
    prompts: Sequence[Sequence[int] | torch.Tensor],
    generation_config: GenerationConfig | None = None,
    *,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
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
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer or None, got {batch_size!r}")
    rows = []
    for i, prompt in enumerate(prompts):
        ids = torch.as_tensor(prompt, dtype=torch.long).reshape(-1)
        if ids.numel() == 0:
            raise ValueError(f"`prompts[{i}]` is empty; every prompt needs at least one token")
        rows.append(ids)
    if not rows:
        raise ValueError("`prompts` is empty")
    use_cache = _setting("use_cache", model, generation_config, kwargs)
    runner = resolve_adapter(model, adapter, use_cache=use_cache is not False, context_length=kwargs.pop("context_length", None))
    eos = _setting("eos_token_id", model, generation_config, kwargs)
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    pad = _setting("pad_token_id", model, generation_config, kwargs)
    pad_id = pad if pad is not None else (min(eos_ids) if eos_ids else 0)
    copies = _setting("num_return_sequences", model, generation_config, kwargs) or 1

    results: list[list[list[int]]] = [[] for _ in rows]
    plan = plan_batches([len(r) for r in rows], batch_size=batch_size or len(rows), pad=runner.supports_attention_mask)
    for batch in plan:
        width = max(len(rows[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, width - len(rows[i]):] = rows[i]
            mask[row, width - len(rows[i]):] = 1
        out = generate(model, ids, generation_config, attention_mask=mask if runner.supports_attention_mask else None,
                       generator=generator, adapter=runner, **kwargs)
        for row, new_tokens in enumerate(out[:, width:].cpu()):
            results[batch[row // copies]].append(_trim(new_tokens, eos_ids))
    return [completion for per_prompt in results for completion in per_prompt]
