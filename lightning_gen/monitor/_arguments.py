"""The checks of a monitor's arguments that need no trainer, run when the callback is built.

The way Lightning's ModelCheckpoint validates its configuration: each function checks one argument (naming it, the
constraint and the value) and returns its normalised form (prompts read from their file, a tokenizer object
wrapped, the generation fields with their defaults), which the constructor stores. Checks that need the trainer or
the model run in ``setup`` and in the probe.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, get_args

from transformers import GenerationConfig, LogitsProcessor

from lightning_gen._checks import check_bool, check_int, is_int
from lightning_gen.decoding.adapters import ModelAdapter, adapter_class
from lightning_gen.decoding.config import validate_generation_kwargs
from lightning_gen.monitor.console import ConsoleMode
from lightning_gen.monitor.distributed import DistributedMode
from lightning_gen.text.tokenization import load_tokenizer

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "check_choice",
    "check_common",
    "check_generation",
    "check_processors",
    "check_seed",
]

DEFAULT_MAX_NEW_TOKENS = 64

_SCHEDULES = ("every_n_train_steps", "every_n_epochs", "train_time_interval")
# `GenerationConfig` fields that are booleans: a string "false" would be truthy there, so each must be a bool.
_GENERATION_BOOLS = ("do_sample", "use_cache", "renormalize_logits", "remove_invalid_values", "output_scores",
                     "output_logits", "output_attentions", "output_hidden_states", "return_dict_in_generate",
                     "low_memory", "disable_compile", "use_mtp")
# `torch.Generator.manual_seed` takes [-2**63, 2**64); the upper half is left for the batch number added to it.
_SEED_RANGE = (-(2**63), 2**63 - 1)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise unless ``value`` is one of ``choices``.

    Raises:
        ValueError: Naming the argument, the choices and the value.

    Example::

        >>> check_choice("on_error", "ignore", ("warn", "raise"))
        Traceback (most recent call last):
        ...
        ValueError: `on_error` must be one of 'warn', 'raise', got 'ignore'
    """
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_common(
    *, tokenizer: Any, schedule: dict[str, Any], switches: dict[str, Any], model_attr: Any, adapter: Any,
    context_length: Any, tag: Any, on_error: Any, distributed: Any, console: Any,
) -> Any:
    """The arguments every monitor takes (see `lightning_gen.monitor.base`); returns the tokenizer, normalised:
    a path checked to exist (loaded in ``setup``, on every process) or an object wrapped (its encode and decode
    checked now).

    Raises:
        ValueError: A value out of its range, or two schedules set.
        TypeError: A value of the wrong type.
        FileNotFoundError: ``tokenizer`` names a file that does not exist.
    """
    chosen = [name for name in _SCHEDULES if schedule.get(name) is not None]
    if len(chosen) > 1:
        raise ValueError("set at most one of `every_n_train_steps`, `every_n_epochs`, `train_time_interval`, got "
                         f"{chosen}")
    check_int("every_n_train_steps", schedule.get("every_n_train_steps"), allow_none=True)
    check_int("every_n_epochs", schedule.get("every_n_epochs"), allow_none=True)
    interval = schedule.get("train_time_interval")
    if interval is not None and not isinstance(interval, timedelta):
        raise TypeError(f"`train_time_interval` must be a timedelta or None, got {interval!r}")
    if interval is not None and interval.total_seconds() <= 0:
        raise ValueError(f"`train_time_interval` must be a positive timedelta or None, got {interval!r}")
    for name, value in switches.items():
        check_bool(name, value)
    if model_attr is not None and (not isinstance(model_attr, str) or not all(model_attr.split("."))):
        raise ValueError("`model_attr` must be a dotted attribute name like 'model' or 'net.decoder', got "
                         f"{model_attr!r}")
    if not isinstance(adapter, ModelAdapter):
        adapter_class(adapter)  # a known name, a ModelAdapter subclass, or the import path of one
    check_int("context_length", context_length, allow_none=True)
    if not isinstance(tag, str) or not tag.strip():
        raise ValueError(f"`tag` must be a non-empty string, got {tag!r}")
    check_choice("on_error", on_error, ("warn", "raise"))
    check_choice("console", console, get_args(ConsoleMode))
    check_choice("distributed", distributed, get_args(DistributedMode))
    if isinstance(tokenizer, (str, os.PathLike)):
        if not os.path.exists(tokenizer):
            raise FileNotFoundError(f"`tokenizer` path does not exist (nothing is downloaded): {str(tokenizer)!r}")
        return tokenizer
    return load_tokenizer(tokenizer) if tokenizer is not None else None


def check_generation(generation: Any) -> dict[str, Any]:
    """The generation fields of a dict or a `GenerationConfig`, with ``max_new_tokens`` defaulting to 64 (unless
    ``max_length`` is given), checked as `generate` checks them (errors prefixed ``generation.``).

    Raises:
        TypeError: ``generation`` is neither a dict nor a `GenerationConfig`, or a boolean field is not a bool.
        ValueError: An unknown field or a value out of range.
        NotImplementedError: Beam search and other search modes.

    Example::

        >>> check_generation({"max_length": 100})
        {'max_length': 100}
        >>> check_generation(None)
        {'max_new_tokens': 64}
    """
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
    if "max_length" not in fields:  # `max_length` alone says how long: it is not topped by a default
        fields.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    validate_generation_kwargs(fields, argument="generation")
    return fields


def check_processors(processors: Any) -> list[LogitsProcessor]:
    """A list of transformers `LogitsProcessor` objects (one is taken as a list of one).

    Raises:
        TypeError: Naming the item that is not a `LogitsProcessor`.
    """
    if processors is None:
        return []
    if isinstance(processors, LogitsProcessor):
        return [processors]
    if not isinstance(processors, (list, tuple)):
        raise TypeError(f"`logits_processors` must be a list of transformers LogitsProcessor objects (or one), got "
                        f"{type(processors).__name__}")
    for i, processor in enumerate(processors):
        if not isinstance(processor, LogitsProcessor):
            raise TypeError(
                f"`logits_processors[{i}]` must be a transformers LogitsProcessor, got {type(processor).__name__}"
            )
    return list(processors)


def check_seed(seed: Any) -> None:
    """Raise unless ``seed`` is an integer in torch's seed range, less room for the batch number added to it.

    Raises:
        TypeError: ``seed`` is not an integer.
        ValueError: ``seed`` is out of range.
    """
    if not is_int(seed):
        raise TypeError(f"`seed` must be an integer, got {seed!r} ({type(seed).__name__})")
    low, high = _SEED_RANGE
    if not low <= seed <= high:
        raise ValueError(f"`seed` must be an integer in [-2**63, 2**63 - 1] (torch's seed range), got {seed!r}")
