"""`generate`: Hugging Face's greedy and sampling decoding for any torch model that returns logits."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import EosTokenCriteria, GenerationConfig, MaxLengthCriteria

from lightning_gen._checks import check_int
from lightning_gen.decoding._sampler import Sampler
from lightning_gen.decoding.adapters import (
    AdapterName,
    ModelAdapter,
    Recording,
    find_vocab_size,
    has_padding,
    model_device,
    require_compilable,
    resolve_adapter,
)
from lightning_gen.decoding.config import SettledConfig, for_prompt, settle_config
from lightning_gen.decoding.processors import build_logits_processors, build_stopping_criteria

__all__ = ["eval_mode", "generate", "generate_settled"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, and restore each one's own previous mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    if not any(training for _, training in modes):  # already in eval mode: nothing to set or restore
        yield
        return
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _check_input_ids(input_ids: Any, vocab_size: int | None) -> None:
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"`input_ids` must be a torch.LongTensor of shape (batch, length), got {type(input_ids).__name__}")
    if input_ids.dtype not in (torch.long, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"`input_ids` must hold integer token ids, got dtype {input_ids.dtype}")
    if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"`input_ids` must be 2-D (batch, length) and non-empty, got shape {tuple(input_ids.shape)}")
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or (vocab_size is not None and high >= vocab_size):
        allowed = f"[0, {vocab_size})" if vocab_size is not None else "non-negative"
        raise ValueError(f"`input_ids` must be token ids {allowed}, got values in [{low}, {high}]")


def _infer_vocab_size(model: nn.Module, vocab_size: int | None) -> int | None:
    if vocab_size is not None:
        check_int("vocab_size", vocab_size, allow_none=True)
        return vocab_size
    return find_vocab_size(model)


def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    generation_config: GenerationConfig | None = None,
    *,
    attention_mask: torch.Tensor | None = None,
    logits_processor: Sequence[Any] | None = None,
    stopping_criteria: Sequence[Any] | None = None,
    generator: torch.Generator | None = None,
    adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
    tokenizer: Any = None,
    vocab_size: int | None = None,
    context_length: int | None = None,
    all_finished: Callable[[bool], bool] | None = None,
    compile: bool | Mapping[str, Any] = False,  # noqa: A002  (torch.compile's word, as in HF's `compile_config`)
    **kwargs: Any,
) -> torch.LongTensor:
    """Complete ``input_ids`` with ``model``, with the semantics of `transformers`' ``model.generate``.

    Greedy decoding or multinomial sampling, with every logits processor of `GenerationConfig` built from
    transformers' own classes in HF's order, logits cast to float32 first. For the same model, configuration
    and seed the tokens are identical to HF's (seed ``torch.manual_seed(s)`` there, ``generator=
    torch.Generator().manual_seed(s)`` here). The model runs in eval mode under `torch.no_grad` and every
    submodule's mode is restored afterwards; the global RNG is never used.

    Args:
        model: Any module returning next-token logits; see `lightning_gen.decoding.adapters` for the protocols.
        input_ids: Prompt token ids, `(B, T)`. Left-pad a batch and pass ``attention_mask`` for models that
            take one (transformers models); for others use `generate_completions`, which groups by length.
        generation_config: Base configuration; ``kwargs`` override its fields. For a transformers model its own
            ``generation_config`` supplies defaults, as in HF.
        attention_mask: `(B, T)`, 1 for tokens and 0 for left padding (transformers models only).
        logits_processor: Extra processors, merged as HF merges them.
        stopping_criteria: Extra stopping criteria, merged as HF merges them.
        generator: The only source of randomness for sampling (on the model's device). When None, a private
            generator seeded from the operating system is used: the global RNG is never touched.
        adapter: How to call the model: None or ``"auto"`` detects its protocol; ``"plain"``, ``"litgpt"``,
            ``"gpt-fast"``, ``"torchtune"``, ``"hf"``, a `ModelAdapter` subclass or its import path, or an instance.
        tokenizer: A Hugging Face tokenizer, needed for ``stop_strings``.
        vocab_size: Keep only the first ``vocab_size`` logits (models whose vocabulary is padded, e.g. 50304);
            by default the model's ``vocab_size`` / ``config.vocab_size`` when it has one.
        context_length: Context length of a plain model, used to crop its input; discovered when omitted.
        all_finished: For sharded models whose forward is a collective (FSDP, DeepSpeed stage 3): a function
            that receives whether this process is done and returns whether every process is (an all-reduce).
            A process that is done keeps calling the model, as HF's ``synced_gpus``, so all make the same
            number of forwards.
        compile: Run the one-token decode step of a KV-cache model (litgpt / gpt-fast protocol, or a transformers
            model whose forward compiles as one graph, over a static cache) through
            `torch.compile`, with static shapes, inputs at fixed addresses and cloned outputs, as gpt-fast does:
            ``True`` uses ``mode="reduce-overhead"`` (CUDA graphs) on CUDA and the default mode elsewhere; a
            mapping gives `torch.compile`'s keyword arguments. The prompt runs eagerly. The first call compiles
            (seconds to minutes); later calls with the same batch size and length reuse the graph. Compiled
            kernels round differently from eager ones, so tokens can differ from HF's where eager ones do not.
        **kwargs: `GenerationConfig` fields (``max_new_tokens``, ``do_sample``, ``top_p`` ...). Unknown names raise.

    Returns:
        Prompt plus new tokens, `(B * num_return_sequences, length)`; rows that ended early are filled with the
        pad id (``pad_token_id``, else the first EOS id), as in HF. With ``return_dict_in_generate=True``, HF's
        `GenerateDecoderOnlyOutput`: ``sequences``, and ``scores`` / ``logits`` (a float32 `(B, V)` per new token)
        when ``output_scores`` / ``output_logits`` ask for them.

    Raises:
        ValueError: An unknown field, a value out of range, ids outside the vocabulary, a prompt that
            leaves no room in the context, or ``compile`` for a model without a static KV cache.
        TypeError: ``input_ids`` is not an integer tensor.
        NotImplementedError: Beam search and other search modes; ``output_attentions`` or ``output_hidden_states``
            with ``return_dict_in_generate``.

    Example::

        >>> class Bigram(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.table = nn.Embedding(16, 16)
        ...     def forward(self, ids):          # (B, T) -> (B, T, V)
        ...         return self.table(ids)
        >>> out = generate(Bigram(), torch.tensor([[1, 2, 3]]), max_new_tokens=5, do_sample=True,
        ...                generator=torch.Generator().manual_seed(0))
        >>> out.shape
        torch.Size([1, 8])
    """
    gen_defaults = getattr(model, "generation_config", None)
    settled = settle_config(generation_config, kwargs,
                            model_generation_config=gen_defaults if isinstance(gen_defaults, GenerationConfig) else None)
    runner = resolve_adapter(model, adapter, use_cache=settled.use_cache, context_length=context_length)
    return generate_settled(model, input_ids, settled, runner, attention_mask=attention_mask,
                            logits_processor=logits_processor, stopping_criteria=stopping_criteria,
                            generator=generator, tokenizer=tokenizer, vocab_size=vocab_size, all_finished=all_finished,
                            compile=compile)


def generate_settled(
    model: nn.Module,
    input_ids: torch.Tensor,
    settled: SettledConfig,
    runner: ModelAdapter,
    *,
    attention_mask: torch.Tensor | None = None,
    logits_processor: Sequence[Any] | None = None,
    stopping_criteria: Sequence[Any] | None = None,
    generator: torch.Generator | None = None,
    tokenizer: Any = None,
    vocab_size: int | None = None,
    all_finished: Callable[[bool], bool] | None = None,
    compile: bool | Mapping[str, Any] = False,  # noqa: A002
) -> torch.LongTensor:
    """`generate` with its configuration and adapter decided once for many calls (`generate_completions` and the
    monitor's rounds): no merging or validation per call, only the prompt's lengths. Arguments as for `generate`;
    ``vocab_size`` defaults to the adapter's, then the model's."""
    vocab = _infer_vocab_size(model, vocab_size if vocab_size is not None else runner.vocab_size)
    _check_input_ids(input_ids, vocab)
    device = model_device(model, input_ids.device)
    ids = input_ids.to(device=device, dtype=torch.long)
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != ids.shape:
            shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
            raise ValueError(f"`attention_mask` must be a tensor of the same shape as `input_ids` {tuple(ids.shape)}, got {shape}")
        attention_mask = attention_mask.to(device=device, dtype=torch.long)

    model_config = getattr(model, "config", None)
    max_positions = getattr(model_config, "max_position_embeddings", None) if model_config is not None else None
    resolved = for_prompt(settled, prompt_length=ids.shape[1], max_position_embeddings=max_positions, device=device)
    cfg, eos, pad = resolved.config, resolved.eos, resolved.pad
    runner.configure(cfg)
    recording = _recording(cfg, runner)
    if not runner.supports_attention_mask and has_padding(attention_mask):
        raise ValueError(
            f"`attention_mask` marks padding, but {type(runner).__name__} cannot mask padded positions; "
            "use `generate_completions` to group prompts by length instead"
        )
    if attention_mask is None and runner.supports_attention_mask and pad is not None and eos is not None:
        # HF infers the mask from pad tokens when the pad id is not also an EOS id.
        if bool((ids == pad).any()) and not bool((eos == pad).any()):
            attention_mask = ids.ne(pad).long()
    # A user's MaxLengthCriteria replaces the built one, as in HF, and may allow more than `max_length`.
    max_length = max([cfg.max_length] + [c.max_length for c in _as_list(stopping_criteria)
                                         if type(c) is MaxLengthCriteria])
    _check_context(runner, ids.shape[1], max_length)
    if compile is not False:
        require_compilable(runner)
        runner.compile(_compile_options(compile, device))

    prompt_ids = ids
    if cfg.num_return_sequences > 1:
        ids = ids.repeat_interleave(cfg.num_return_sequences, dim=0)
        if attention_mask is not None:
            attention_mask = attention_mask.repeat_interleave(cfg.num_return_sequences, dim=0)
    padded_mask = attention_mask if has_padding(attention_mask) else None
    processors = build_logits_processors(
        cfg, eos=eos, prompt_ids=prompt_ids, attention_mask=padded_mask, user_processors=logits_processor, device=device
    )
    if recording is not None and recording.processor is not None:
        processors.append(recording.processor)  # after HF's sampling warpers too: it sees the final scores
    criteria = build_stopping_criteria(
        cfg, eos=eos, tokenizer=tokenizer, user_criteria=stopping_criteria, max_position_embeddings=max_positions
    )
    pad_finished = pad is not None and any(hasattr(c, "eos_token_id") for c in criteria)
    if generator is None and cfg.do_sample:
        # HF would draw from the global RNG; a private generator seeded from the OS leaves it untouched.
        generator = torch.Generator(device=device)
        generator.seed()
    # The model leaves as it came: modes, and every attribute, buffer and submodule the adapter touched.
    with torch.no_grad(), eval_mode(model), runner.kept():
        sequences = _decode_loop(
            recording or runner, ids, attention_mask, processors, criteria,
            do_sample=bool(cfg.do_sample), max_length=max_length, vocab_size=vocab,
            pad=pad if pad_finished else None, generator=generator, all_finished=all_finished,
        )
    return recording.output(sequences, steps=sequences.shape[1] - ids.shape[1]) if recording is not None else sequences


def _recording(cfg: GenerationConfig, runner: ModelAdapter) -> Recording | None:
    """The recorder ``return_dict_in_generate`` needs, or None; what we cannot return raises, naming the field."""
    if not cfg.return_dict_in_generate:
        return None
    for name in ("output_attentions", "output_hidden_states"):
        if getattr(cfg, name, False):
            raise NotImplementedError(
                f"`{name}=True`: `return_dict_in_generate` returns `sequences`, `scores` (`output_scores`) and "
                "`logits` (`output_logits`), not attentions or hidden states"
            )
    return Recording(runner, logits=bool(cfg.output_logits), scores=bool(cfg.output_scores))


def _compile_options(compile: Any, device: torch.device) -> dict[str, Any]:  # noqa: A002
    if compile is True:
        return {"dynamic": False, "mode": "reduce-overhead" if device.type == "cuda" else "default"}
    if isinstance(compile, Mapping):
        return {"dynamic": False, **compile}
    raise TypeError(f"`compile` must be a bool or a mapping of torch.compile arguments, got {compile!r}")


def _check_context(runner: ModelAdapter, prompt_length: int, max_length: int) -> None:
    context = runner.context_length
    if context is None:
        return
    if runner.needs_room_for_new_tokens and max_length > context:
        raise ValueError(
            f"prompt length {prompt_length} plus new tokens ({max_length - prompt_length}) is {max_length}, more than "
            f"the context length {context} of this KV-cache model; lower `max_new_tokens` or crop the prompt"
        )


def _as_list(criteria: Any) -> list[Any]:
    return list(criteria) if isinstance(criteria, Sequence) else []


def _stops_only_at(criteria: Any, max_length: int) -> bool:
    """Whether ``criteria`` is HF's `MaxLengthCriteria` for ``max_length`` alone, its warning unreachable."""
    items = _as_list(criteria)
    if len(items) != 1 or type(items[0]) is not MaxLengthCriteria:
        return False
    limit = items[0]
    # It warns once the sequence, not yet done, is longer than `max_position_embeddings`.
    return limit.max_length == max_length and (
        limit.max_position_embeddings is None or max_length - 1 <= limit.max_position_embeddings)


#: How many decode steps pass between two checks of "has every row ended?" when EOS is the only early stop. Off
#: the CPU each check waits for the device; rows that end between checks keep receiving pad, and the output and the
#: generator are then wound back to the step HF stopped at. On the CPU reading a flag costs nothing: every step.
EOS_CHECK_EVERY: dict[str, int] = {"cpu": 1}
_EOS_CHECK_EVERY_ELSEWHERE = 8


def _eos_only(criteria: Any, max_length: int) -> torch.Tensor | None:
    """The EOS ids when ``criteria`` are HF's `EosTokenCriteria` plus the `MaxLengthCriteria` of `_stops_only_at`,
    and nothing else: the loop can then decide by itself when each row ends. None otherwise."""
    items = _as_list(criteria)
    eos = [c for c in items if type(c) is EosTokenCriteria]
    limits = [c for c in items if type(c) is not EosTokenCriteria]
    if len(eos) != 1 or not _stops_only_at(limits, max_length):
        return None
    return eos[0].eos_token_id


def _steps_hf_takes(new_tokens: torch.Tensor, eos: torch.Tensor) -> int:
    """How many steps HF's loop runs on ``new_tokens`` `(B, n)` in which every row holds an EOS id: up to the step
    the last row to end took its first one."""
    first = torch.isin(new_tokens, eos).int().argmax(dim=1)  # (B,) the first EOS of each row
    return int(first.max()) + 1


def _decode_loop(
    runner: ModelAdapter,
    ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    processors: Any,
    criteria: Any,
    *,
    do_sample: bool,
    max_length: int,
    vocab_size: int | None,
    pad: torch.Tensor | None,
    generator: torch.Generator | None,
    all_finished: Callable[[bool], bool] | None = None,
) -> torch.LongTensor:
    """The loop of HF's ``_sample``, over a preallocated `(B, max_length)` buffer.

    With ``all_finished`` (a collective across processes), a process whose rows have all ended keeps calling
    the model on its last tokens, without extending them, until every process is done, as HF's ``synced_gpus``.
    When the only criterion is the maximum length, the loop counts instead of evaluating it: no tensor work and
    no host sync per token. When EOS is the only other one, the loop tracks the rows that ended as a mask and looks
    at it every `EOS_CHECK_EVERY` steps only; steps run past HF's stop are then taken back (the tokens trimmed, the
    generator rewound, their deferred checks dropped), so tokens and generator state are HF's.
    """
    batch, length = ids.shape
    start = length
    tokens = ids.new_empty((batch, max_length))  # (B, L_max), filled as we go
    tokens[:, :length] = ids
    mask = None
    if attention_mask is not None:
        mask = attention_mask.new_ones((batch, max_length))
        mask[:, :length] = attention_mask
    unfinished = torch.ones(batch, dtype=torch.long, device=ids.device)
    length_only = _stops_only_at(criteria, max_length)
    eos = None if length_only or all_finished is not None else _eos_only(criteria, max_length)
    every = 1
    if eos is not None:
        eos = eos.to(ids.device)
        alive = torch.ones(batch, dtype=torch.bool, device=ids.device)  # (B,) rows that have not ended
        # Winding the generator back needs one that is known (not the default one, which the model may use).
        if not do_sample or generator is not None:
            every = EOS_CHECK_EVERY.get(ids.device.type, _EOS_CHECK_EVERY_ELSEWHERE)
    sampler = Sampler(processors, rewindable=every - 1)
    done = False
    sequences = ids
    try:
        logits = runner.prefill(ids, attention_mask, max_length=max_length)
        while True:
            if not done:
                scores = logits.to(dtype=torch.float32, copy=True)  # (B, V), HF's copy: processors may write into it
                # Drop the model's logits before the next forward, as HF does; this step's scores stay until the
                # next step replaces them, as in HF's loop, which keeps malloc from handing their pages back to the
                # system between steps (and faulting them in again, page by page, at every step).
                logits = None
                if vocab_size is not None and scores.shape[1] > vocab_size:
                    scores = scores[:, :vocab_size]
                if do_sample:
                    next_tokens = sampler.sample(sequences, scores, generator=generator)
                else:
                    next_tokens = sampler.greedy(sequences, scores)
                if eos is not None:
                    if pad is not None:
                        next_tokens = torch.where(alive, next_tokens, pad)  # HF's arithmetic, as a select
                    tokens[:, length] = next_tokens
                    length += 1
                    alive &= ~torch.isin(next_tokens, eos)
                    done = length >= max_length or ((length - start) % every == 0 and not bool(alive.any()))
                else:
                    if pad is not None:
                        next_tokens = next_tokens * unfinished + pad * (1 - unfinished)
                    tokens[:, length] = next_tokens
                    length += 1
                    if length_only:
                        done = length >= max_length
                    else:
                        unfinished = unfinished & ~criteria(tokens[:, :length], None)
                        done = not bool(unfinished.any())  # the one host sync per token: stop strings, max time ...
                sequences = tokens[:, :length]
            if all_finished(done) if all_finished is not None else done:
                break
            logits = runner.decode(sequences, None if mask is None else mask[:, :length])
        if every > 1 and not bool(alive.any()):
            taken = _steps_hf_takes(tokens[:, start:length], eos)
            if taken < length - start:
                sampler.rewind(length - start - taken)
                sequences = tokens[:, :start + taken]
        sampler.finish()
    finally:
        runner.close()
    return sequences
