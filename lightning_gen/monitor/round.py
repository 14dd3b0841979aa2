"""One sampling round: tokenized prompts in, decoded and scored samples out."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from lightning_gen.decoding.adapters import ModelAdapter, model_device
from lightning_gen.decoding.batching import complete_batch, plan_completions
from lightning_gen.decoding.config import eos_id_set
from lightning_gen.decoding.generation import eval_mode
from lightning_gen.decoding.scoring import reference_loss, token_logprobs
from lightning_gen.text.samples import EncodedPrompts, Sample
from lightning_gen.text.tokenization import LoadedTokenizer

__all__ = ["sample_round", "score_sample"]


def _greedy(config: GenerationConfig) -> GenerationConfig:
    """The same configuration without sampling (and without the sampling-only fields HF would warn about)."""
    greedy = copy.deepcopy(config)
    greedy.do_sample = False
    greedy.num_return_sequences = 1
    for name in ("temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff"):
        setattr(greedy, name, None)
    return greedy


def sample_round(
    model: nn.Module,
    encoded: EncodedPrompts,
    tokenizer: LoadedTokenizer,
    generation_config: GenerationConfig,
    *,
    seed: int,
    batch_size: int | None = None,
    adapter: ModelAdapter | None = None,
    logits_processors: Sequence[Any] | None = None,
    context_length: int | None = None,
    also_greedy: bool = False,
    shard: tuple[int, int] = (0, 1),
    all_finished: Callable[[bool], bool] | None = None,
    score: bool = False,
    compile: bool = False,  # noqa: A002  (torch.compile's word)
) -> list[tuple[int, Sample]]:
    """Complete the prompts with the same noise as every other round, and decode the results.

    The prompts are cut into batches once (`plan_completions`); batch ``b`` draws from a fresh generator seeded
    with ``seed + b`` on the model's device. So every round uses the same noise (samples are comparable across
    steps), no other random stream is touched, and a batch gives the same tokens whichever process runs it.

    Args:
        shard: ``(rank, world_size)``: this process runs batches ``b`` with ``b % world_size == rank``.
        all_finished: Passed to `generate` (lockstep decoding for sharded models); every process then runs
            every batch, and ``shard`` must be ``(0, 1)``.
        score: Also measure each sample under the model, teacher-forced: ``metrics["mean_logprob"]`` of the
            completion (and each token's, ``Sample.token_logprobs``) and, for prompts with a reference,
            ``metrics["reference_loss"]``.
        compile: Passed to `generate`: compile the decode step of a KV-cache model.

    Raises:
        LastPositionOnlyError: ``score`` is set but the model returns logits for the last position only.

    Returns:
        ``(position, sample)`` pairs, position being the sample's place in the full round (prompt-major, then
        each of ``num_return_sequences``), so shards can be merged in order.
    """
    device = model_device(model, torch.device("cpu"))
    plan = plan_completions(model, encoded.ids, generation_config, batch_size=batch_size, adapter=adapter,
                            context_length=context_length)
    hf_tokenizer = tokenizer.hf_tokenizer if generation_config.stop_strings else None
    options = dict(logits_processor=list(logits_processors or []), tokenizer=hf_tokenizer, all_finished=all_finished,
                   compile=compile)
    rank, world = shard
    eos_ids = eos_id_set(generation_config.eos_token_id)
    out, references = [], {}
    for number, batch in enumerate(plan.batches):
        if number % world != rank:
            continue
        generator = torch.Generator(device=device).manual_seed(seed + number)
        sampled = complete_batch(model, plan, batch, generation_config, generator=generator, **options)
        greedy = complete_batch(model, plan, batch, _greedy(generation_config), **options) if also_greedy else None
        for row, completion in enumerate(sampled):
            i = batch[row // plan.copies]
            context = context_length or plan.runner.context_length
            metrics, per_token = score_sample(model, encoded, i, completion, context, plan.runner,
                                              references=references) if score else ({}, None)
            out.append((i * plan.copies + row % plan.copies, Sample(
                prompt=tokenizer.decode(encoded.ids[i]),
                completion=tokenizer.decode(completion),
                prompt_ids=encoded.ids[i],
                completion_ids=completion,
                reference=encoded.prompts[i].reference,
                greedy=tokenizer.decode(greedy[row // plan.copies]) if greedy is not None else None,
                metrics=metrics,
                token_logprobs=per_token,
                tokens=[tokenizer.decode([t]) for t in completion] if per_token is not None else None,
                eos=bool(completion) and completion[-1] in eos_ids,
            )))
    return out


def score_sample(
    model: nn.Module, encoded: EncodedPrompts, i: int, completion: list[int], context: int | None,
    runner: ModelAdapter | None = None, *, references: dict[int, float] | None = None,
) -> tuple[dict[str, float], list[float] | None]:
    """Teacher-forced measurements of one sample (eval mode, no gradients, so training is untouched), through
    ``runner``, the adapter the round sampled with (the probe asks the same question this way).

    ``references`` keeps each prompt's reference loss once computed: the copies of one prompt
    (``num_return_sequences``) share it, which they would otherwise each recompute with the same forward.

    Returns the metrics and the log-probability of each completion token (None for an empty completion); where
    the context crops the sequence only the last tokens are scored (see `token_logprobs`).
    """
    metrics, per_token = {}, None
    scorer = runner if runner is not None else model  # the protocol the model samples with scores it too
    with torch.no_grad(), eval_mode(model):
        if completion:
            scores = token_logprobs(scorer, encoded.ids[i], completion, context_length=context)  # (N,)
            per_token = scores.tolist()
            metrics["mean_logprob"] = float(scores.mean()) if per_token else math.nan
        reference = encoded.references[i] if encoded.references else None
        if reference:
            known = references if references is not None else {}
            if i not in known:
                known[i] = reference_loss(scorer, encoded.ids[i], reference, context_length=context)
            metrics["reference_loss"] = known[i]
    return metrics, per_token
