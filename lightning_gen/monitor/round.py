"""One sampling round: the run's tokenized prompts and plan in, decoded and scored samples out."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from lightning_gen.decoding.adapters import ModelAdapter, model_device
from lightning_gen.decoding.batching import BatchPlan, make_plan
from lightning_gen.decoding.generation import eval_mode
from lightning_gen.decoding.scoring import token_logprobs
from lightning_gen.monitor.plan import Plan
from lightning_gen.text.samples import EncodedPrompts, Sample
from lightning_gen.text.tokenization import LoadedTokenizer

__all__ = ["batches_of", "call_options", "decode_sample", "runner_for", "sample_round", "score_sample"]


def runner_for(model: nn.Module, plan: Plan) -> ModelAdapter:
    """The plan's adapter for ``model`` (see `Target.runner_for`); `call_options` gives its calls the vocabulary."""
    return plan.target.runner_for(model, use_cache=plan.settled.use_cache)


def batches_of(model: nn.Module, plan: Plan, encoded: EncodedPrompts, *, batch_size: int | None) -> BatchPlan:
    """The batches of the run's prompts for ``model`` (see `runner_for`)."""
    rows = [torch.tensor(ids, dtype=torch.long) for ids in encoded.ids]
    return make_plan(rows, runner_for(model, plan), plan.settled, policy=plan.policy, batch_size=batch_size)


def call_options(plan: Plan, tokenizer: LoadedTokenizer, *, logits_processors: Sequence[Any] | None,
                 all_finished: Callable[[bool], bool] | None, compile: bool) -> dict[str, Any]:  # noqa: A002
    """`generate`'s options for every call of a round (the probe's too)."""
    hf_tokenizer = tokenizer.hf_tokenizer if plan.settled.config.stop_strings else None
    return dict(logits_processor=list(logits_processors or []), tokenizer=hf_tokenizer, all_finished=all_finished,
                compile=compile, vocab_size=plan.vocab)


def sample_round(
    model: nn.Module,
    encoded: EncodedPrompts,
    tokenizer: LoadedTokenizer,
    plan: Plan,
    *,
    seed: int,
    batch_size: int | None = None,
    logits_processors: Sequence[Any] | None = None,
    shard: tuple[int, int] = (0, 1),
    all_finished: Callable[[bool], bool] | None = None,
    compile: bool = False,  # noqa: A002  (torch.compile's word)
) -> list[tuple[int, Sample]]:
    """Complete the prompts with the same noise as every other round, and decode (and score) the results.

    Batch ``b`` draws from a fresh generator seeded with ``seed + b`` on the model's device. So every round uses the
    same noise (samples are comparable across steps), no other random stream is touched, and a batch gives the same
    tokens whichever process runs it. The greedy completions come beside the sampled ones when ``plan.greedy`` is
    set, and each sample is scored when ``plan.score`` is.

    Args:
        shard: ``(rank, world_size)``: this process runs batches ``b`` with ``b % world_size == rank``.
        all_finished: Passed to `generate` (lockstep decoding for sharded models); every process then runs
            every batch, and ``shard`` must be ``(0, 1)``.
        compile: Passed to `generate`: compile the decode step of a KV-cache model.

    Returns:
        ``(position, sample)`` pairs, position being the sample's place in the full round (prompt-major, then
        each of ``num_return_sequences``), so shards can be merged in order.
    """
    batches = batches_of(model, plan, encoded, batch_size=batch_size)
    device = model_device(model, torch.device("cpu"))
    rank, world = shard
    numbers = [number for number in range(len(batches.batches)) if number % world == rank]
    options = call_options(plan, tokenizer, logits_processors=logits_processors, all_finished=all_finished,
                           compile=compile)
    noise = (lambda number: torch.Generator(device=device).manual_seed(seed + number))
    sampled = list(batches.completions(model, numbers=numbers, generator=noise, **options))
    greedy: dict[int, list[int]] = {}
    if plan.greedy is not None:
        greedy = {i: ids for i, _, ids in batches.completions(model, numbers=numbers, settled=plan.greedy, **options)}
    references: dict[int, float] = {}
    out = []
    for i, copy, completion in sampled:
        metrics, per_token = score_sample(model, encoded, i, completion, plan.context, batches.runner,
                                          references=references) if plan.score else ({}, None)
        sample = decode_sample(tokenizer, encoded, i, completion, eos_ids=plan.settled.eos_ids,
                               greedy=greedy.get(i), metrics=metrics, token_logprobs=per_token)
        out.append((i * batches.copies + copy, sample))
    return out


def decode_sample(
    tokenizer: LoadedTokenizer, encoded: EncodedPrompts, i: int, completion: list[int], *, eos_ids: frozenset[int],
    greedy: list[int] | None = None, metrics: dict[str, float] | None = None,
    token_logprobs: list[float] | None = None,
) -> Sample:
    """The `Sample` of prompt ``i``'s ``completion``: its text, and each token's text where it was scored."""
    return Sample(
        prompt=tokenizer.decode(encoded.ids[i]),
        completion=tokenizer.decode(completion),
        prompt_ids=encoded.ids[i],
        completion_ids=completion,
        reference=encoded.prompts[i].reference,
        greedy=tokenizer.decode(greedy) if greedy is not None else None,
        metrics=metrics or {},
        token_logprobs=token_logprobs,
        tokens=[tokenizer.decode([t]) for t in completion] if token_logprobs is not None else None,
        eos=bool(completion) and completion[-1] in eos_ids,
    )


def score_sample(
    model: nn.Module, encoded: EncodedPrompts, i: int, completion: list[int], context: int | None,
    runner: ModelAdapter, *, references: dict[int, float] | None = None,
) -> tuple[dict[str, float], list[float] | None]:
    """Teacher-forced measurements of one sample (eval mode, no gradients, so training is untouched), through
    ``runner``, the adapter the round sampled with, within the plan's ``context``.

    ``references`` keeps each prompt's reference loss once computed: the copies of one prompt
    (``num_return_sequences``) share it, which they would otherwise each recompute with the same forward.

    Returns the metrics and the log-probability of each completion token (None for an empty completion); where
    the context crops the sequence only the last tokens are scored (see `token_logprobs`).
    """
    metrics, per_token = {}, None
    with torch.no_grad(), eval_mode(model):
        if completion:
            scores = token_logprobs(runner, encoded.ids[i], completion, context_length=context)  # (N,)
            per_token = scores.tolist()
            metrics["mean_logprob"] = float(scores.mean()) if per_token else math.nan
        reference = encoded.references[i] if encoded.references else None
        if reference:
            known = references if references is not None else {}
            if i not in known:
                # the mean cross-entropy (nats per token) of the reference, teacher-forced on its prompt
                known[i] = -float(token_logprobs(runner, encoded.ids[i], reference, context_length=context).mean())
            metrics["reference_loss"] = known[i]
    return metrics, per_token
