"""Every check of `GenerationMonitor`'s arguments that needs no trainer, run when the callback is built.

The way Lightning's ModelCheckpoint validates its configuration: the constructor stores what it was given,
then `check_arguments` checks each value (naming the argument, the constraint and the value) and puts the
normalised forms back (prompts read from their file, a tokenizer object wrapped, the generation fields with
their defaults). Checks that need the trainer or the model run in ``setup``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, get_args

from transformers import GenerationConfig, LogitsProcessor

from lightning_gen._checks import check_bool, check_int, is_int
from lightning_gen.decoding.adapters import ModelAdapter, adapter_class
from lightning_gen.decoding.config import validate_generation_kwargs
from lightning_gen.monitor.console import ConsoleMode
from lightning_gen.monitor.distributed import DistributedMode
from lightning_gen.text.prompts import load_prompts
from lightning_gen.text.tokenization import load_tokenizer

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "check_arguments"]

DEFAULT_MAX_NEW_TOKENS = 64

_BOOLS = ("sample_on_train_start", "sample_on_train_end", "sample_on_validation", "also_greedy", "empty_cache",
          "compile", "log_metrics")
_SCHEDULES = ("every_n_train_steps", "every_n_epochs", "train_time_interval")
# `GenerationConfig` fields that are booleans: a string "false" would be truthy there, so each must be a bool.
_GENERATION_BOOLS = ("do_sample", "use_cache", "renormalize_logits", "remove_invalid_values", "output_scores",
                     "output_logits", "output_attentions", "output_hidden_states", "return_dict_in_generate",
                     "low_memory", "disable_compile", "use_mtp")
# `torch.Generator.manual_seed` takes [-2**63, 2**64); the upper half is left for the batch number added to it.
_SEED_RANGE = (-(2**63), 2**63 - 1)


def check_arguments(monitor: Any) -> None:
    """Check the arguments stored on ``monitor`` and replace them by their normalised forms.

    Raises:
        ValueError: A value out of its range, or two schedules set.
        TypeError: A value of the wrong type.
        FileNotFoundError: ``prompts`` or ``tokenizer`` names a file that does not exist.
        NotImplementedError: ``generation`` asks for beam search or another search mode.
    """
    check_int("data_prompt_tokens", monitor.data_prompt_tokens)
    check_int("data_reference_tokens", monitor.data_reference_tokens)
    check_int("prompts_from_data", monitor.prompts_from_data, low=0)
    monitor.prompts = load_prompts(monitor.prompts) if monitor.prompts or not monitor.prompts_from_data else []
    monitor._tokenizer_arg = _tokenizer(monitor._tokenizer_arg)
    _check_schedule(monitor)
    for name in _BOOLS:
        check_bool(name, getattr(monitor, name))
    monitor.generation = _generation(monitor.generation)
    monitor.logits_processors = _processors(monitor.logits_processors)
    low, high = _SEED_RANGE
    if not is_int(monitor.seed) or not low <= monitor.seed <= high:
        raise ValueError(f"`seed` must be an integer in [-2**63, 2**63 - 1] (torch's seed range), got {monitor.seed!r}")
    model_attr = monitor.model_attr
    if model_attr is not None and (not isinstance(model_attr, str) or not all(model_attr.split("."))):
        raise ValueError(f"`model_attr` must be a dotted attribute name like 'model' or 'net.decoder', got {model_attr!r}")
    check_int("batch_size", monitor.batch_size, allow_none=True)
    check_int("vocab_size", monitor.vocab_size, allow_none=True)
    if not isinstance(monitor.adapter, ModelAdapter):
        adapter_class(monitor.adapter)  # a known name, a ModelAdapter subclass, or the import path of one
    check_int("context_length", monitor.context_length, allow_none=True)
    if not isinstance(monitor.tag, str) or not monitor.tag.strip():
        raise ValueError(f"`tag` must be a non-empty string, got {monitor.tag!r}")
    if monitor.on_error not in ("warn", "raise"):
        raise ValueError(f"`on_error` must be 'warn' or 'raise', got {monitor.on_error!r}")
    if monitor.console not in get_args(ConsoleMode):
        raise ValueError(f"`console` must be one of {', '.join(map(repr, get_args(ConsoleMode)))}, got {monitor.console!r}")
    modes = get_args(DistributedMode)
    if monitor.distributed not in modes:
        raise ValueError(f"`distributed` must be one of {', '.join(map(repr, modes))}, got {monitor.distributed!r}")


def _tokenizer(tokenizer: Any) -> Any:
    if isinstance(tokenizer, (str, os.PathLike)):
        if not os.path.exists(tokenizer):
            raise FileNotFoundError(f"`tokenizer` path does not exist (nothing is downloaded): {str(tokenizer)!r}")
        return tokenizer  # loaded in `setup`, on every process
    return load_tokenizer(tokenizer) if tokenizer is not None else None  # checks encode/decode now


def _check_schedule(monitor: Any) -> None:
    chosen = [name for name in _SCHEDULES if getattr(monitor, name) is not None]
    if len(chosen) > 1:
        raise ValueError(f"set at most one of `every_n_train_steps`, `every_n_epochs`, `train_time_interval`, got {chosen}")
    check_int("every_n_train_steps", monitor.every_n_train_steps, allow_none=True)
    check_int("every_n_epochs", monitor.every_n_epochs, allow_none=True)
    interval = monitor.train_time_interval
    if interval is not None and (not isinstance(interval, timedelta) or interval.total_seconds() <= 0):
        raise ValueError(f"`train_time_interval` must be a positive timedelta or None, got {interval!r}")


def _generation(generation: Any) -> dict[str, Any]:
    if isinstance(generation, GenerationConfig):
        fields = {k: v for k, v in generation.to_diff_dict().items() if k != "transformers_version"}
    elif generation is None or isinstance(generation, dict):
        fields = dict(generation or {})
    else:
        hint = " (a string is not parsed: write {'max_new_tokens': 8})" if isinstance(generation, str) else ""
        raise TypeError(f"`generation` must be a dict of GenerationConfig fields or a GenerationConfig{hint}, got "
                        f"{type(generation).__name__} {generation!r}")
    for name in _GENERATION_BOOLS:
        if fields.get(name) is not None:
            check_bool(f"generation.{name}", fields[name])
    if fields.get("early_stopping") is not None and fields["early_stopping"] not in (True, False, "never"):
        raise TypeError(f"`generation.early_stopping` must be True, False or 'never', got {fields['early_stopping']!r}")
    fields.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    validate_generation_kwargs(fields, argument="generation")
    return fields


def _processors(processors: Any) -> list[LogitsProcessor]:
    if processors is None:
        return []
    if isinstance(processors, LogitsProcessor):
        return [processors]  # one processor, as if in a list
    if not isinstance(processors, (list, tuple)):
        raise TypeError(f"`logits_processors` must be a list of transformers LogitsProcessor objects (or one), got "
                        f"{type(processors).__name__}")
    processors = list(processors)
    for i, processor in enumerate(processors):
        if not isinstance(processor, LogitsProcessor):
            raise TypeError(
                f"`logits_processors[{i}]` must be a transformers LogitsProcessor, got {type(processor).__name__}"
            )
    return processors


