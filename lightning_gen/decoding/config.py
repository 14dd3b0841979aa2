"""Resolve a `GenerationConfig` the way `transformers`' `generate` does, but strictly.

Hugging Face merges, in order of priority: the keyword arguments of the call, the `generation_config` passed
in, the model's own `generation_config` (transformers models only), then the library-wide defaults (which
include the implicit ``top_k=50`` when sampling). `GenerationConfig` silently keeps unknown keys; we reject
them, and we check every value we use with a message that names the field and the value.
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.generation.configuration_utils import GenerationMode

from lightning_gen._checks import check_int, is_int

__all__ = ["ResolvedConfig", "SettledConfig", "for_prompt", "generation_fields", "merge_config", "settle_config",
           "unknown_field_error", "validate_generation_kwargs"]

# `GenerationConfig` stores bookkeeping attributes that are not generation options.
_NOT_FIELDS = {"transformers_version"}

# Fields that only make sense for search modes or model kinds we do not implement.
_UNSUPPORTED = {
    "guidance_scale": "classifier-free guidance needs an unconditional model; not supported",
    "watermarking_config": "watermarking is not supported",
    "token_healing": "token healing is not supported",
    "prefill_chunk_size": "chunked prefill is not supported",
}


def generation_fields() -> frozenset[str]:
    """Names accepted as `GenerationConfig` fields (what ``**kwargs`` of `generate` may contain)."""
    return frozenset(k for k in vars(GenerationConfig()) if not k.startswith("_") and k not in _NOT_FIELDS)


def unknown_field_error(key: str, argument: str) -> ValueError:
    """The error for a key that is not a `GenerationConfig` field, naming ``argument`` and the closest fields."""
    close = difflib.get_close_matches(key, sorted(generation_fields()), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"`{argument}` got an unknown GenerationConfig field {key!r}{hint}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(name: str, value: Any, ok: bool, constraint: str) -> None:
    if not ok:
        raise ValueError(f"`{name}` must be {constraint}, got {value!r}")


def _check_token_ids(name: str, value: Any) -> None:
    ids = value if isinstance(value, (list, tuple)) else [value]
    _check(name, value, len(ids) > 0 and all(is_int(i) and i >= 0 for i in ids),
           "a non-negative token id or a non-empty list of them")


def _validate_values(cfg: GenerationConfig, prefix: str = "") -> None:
    """Range checks for every field our decoding reads (HF checks a few of these only when sampling); errors name
    the field as ``{prefix}{field}`` (``generation.top_p`` for the monitor's argument)."""
    for name, low in (("max_new_tokens", 1), ("max_length", 1), ("min_new_tokens", 0), ("min_length", 0),
                      ("num_return_sequences", 1), ("num_beams", 1), ("no_repeat_ngram_size", 0),
                      ("encoder_no_repeat_ngram_size", 0), ("top_k", 0)):
        value = getattr(cfg, name)
        if value is not None:
            check_int(f"{prefix}{name}", value, low=low)
    if cfg.temperature is not None:
        _check(f"{prefix}temperature", cfg.temperature, _is_number(cfg.temperature) and cfg.temperature > 0
               and math.isfinite(cfg.temperature), "a finite number > 0")
    for name, constraint, test in (
        ("top_p", "in (0, 1]", lambda v: 0 < v <= 1),
        ("typical_p", "in (0, 1]", lambda v: 0 < v <= 1),
        ("min_p", "in [0, 1]", lambda v: 0 <= v <= 1),
        ("top_h", "in (0, 1]", lambda v: 0 < v <= 1),
        ("epsilon_cutoff", "in [0, 1)", lambda v: 0 <= v < 1),
        ("eta_cutoff", "in [0, 1)", lambda v: 0 <= v < 1),
        ("repetition_penalty", "a number > 0", lambda v: v > 0),
        ("encoder_repetition_penalty", "a number > 0", lambda v: v > 0),
        ("max_time", "a number > 0 (seconds)", lambda v: v > 0),
    ):
        value = getattr(cfg, name)
        if value is not None:
            _check(f"{prefix}{name}", value, _is_number(value) and test(value), constraint)
    for name in ("eos_token_id", "pad_token_id", "bos_token_id", "forced_bos_token_id", "forced_eos_token_id"):
        value = getattr(cfg, name)
        if value is not None and not isinstance(value, torch.Tensor):
            _check_token_ids(f"{prefix}{name}", value)
    if cfg.stop_strings is not None:
        strings = [cfg.stop_strings] if isinstance(cfg.stop_strings, str) else cfg.stop_strings
        _check(f"{prefix}stop_strings", cfg.stop_strings,
               isinstance(strings, (list, tuple)) and len(strings) > 0 and all(isinstance(s, str) and s for s in strings),
               "a non-empty string or list of non-empty strings")
    for name, value in vars(cfg).items():
        if name in _UNSUPPORTED and value is not None:
            raise NotImplementedError(f"`{prefix}{name}`={value!r}: {_UNSUPPORTED[name]}")
    mode = cfg.get_generation_mode()
    if mode not in (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE):
        raise NotImplementedError(
            f"only greedy decoding and multinomial sampling are implemented, but this configuration selects "
            f"{mode.value!r} (num_beams={cfg.num_beams}); use num_beams=1 and no assistant/contrastive/DoLa options"
        )


def validate_generation_kwargs(fields: dict[str, Any], *, argument: str = "generation") -> GenerationConfig:
    """Check a dict of `GenerationConfig` fields without a model, as early as possible.

    Unknown keys raise (HF would keep them silently), then HF's own validation runs, then our range checks.

    Args:
        fields: `GenerationConfig` field names and values.
        argument: The name of the caller's argument, used in error messages.

    Returns:
        The `GenerationConfig` built from ``fields`` with HF's defaults filled in.

    Raises:
        ValueError: For an unknown field or a value out of range.
        NotImplementedError: For beam search and other search modes.

    Example::

        >>> validate_generation_kwargs({"do_sample": True, "top_p": 0.9}).top_k
        50
    """
    if not isinstance(fields, dict):
        raise TypeError(f"`{argument}` must be a dict of GenerationConfig fields, got {type(fields).__name__}")
    known = generation_fields()
    for key in fields:
        if key not in known:
            raise unknown_field_error(key, argument)
    cfg = GenerationConfig()
    try:
        cfg.update(**fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{argument}` = {fields!r} is not a valid GenerationConfig: {err}") from err
    cfg.update(**GenerationConfig._get_default_generation_params(), defaults_only=True)
    _validate_values(cfg, prefix=f"{argument}.")
    return cfg


def merge_config(
    generation_config: GenerationConfig | None,
    kwargs: dict[str, Any],
    *,
    model_generation_config: GenerationConfig | None = None,
) -> GenerationConfig:
    """HF's precedence, the one place it is decided: call ``kwargs``, then ``generation_config``, then the model's
    own ``generation_config``, then the library defaults (a private copy; nothing passed in is changed).

    Raises:
        ValueError: A key of ``kwargs`` is not a `GenerationConfig` field.

    Example::

        >>> merge_config(GenerationConfig(top_k=5), {"top_k": 7}).top_k
        7
    """
    known = generation_fields()
    for key in kwargs:
        if key not in known:
            raise unknown_field_error(key, "generate")
    cfg = copy.deepcopy(generation_config) if generation_config is not None else GenerationConfig()
    if model_generation_config is not None:
        cfg.update(**model_generation_config.to_dict(), defaults_only=True, allow_custom_entries=True)
    cfg.update(**GenerationConfig._get_default_generation_params(), defaults_only=True)
    cfg.update(**kwargs)
    return cfg


def _eos_ids(eos_token_id: Any) -> tuple[int, ...]:
    """The EOS ids of a configuration value (None, one id, a list or tuple of ids, or a tensor), in order.

    Example::

        >>> _eos_ids((2, 1)), _eos_ids(None), _eos_ids(torch.tensor([3]))
        ((2, 1), (), (3,))
    """
    if eos_token_id is None:
        return ()
    if isinstance(eos_token_id, torch.Tensor):
        return tuple(int(i) for i in eos_token_id.reshape(-1).tolist())
    if isinstance(eos_token_id, (list, tuple)):
        return tuple(int(i) for i in eos_token_id)
    return (int(eos_token_id),)


@dataclass(frozen=True)
class SettledConfig:
    """A configuration merged and validated once, for any number of calls (every batch of a round, every round).

    Attributes:
        config: The merged configuration (a private copy; lengths still relative to no prompt).
        default_max_length: Whether ``max_length`` is HF's implicit default (20, counted after the prompt).
        eos: The end-of-sequence ids in configuration order (empty when there is none).
        pad_id: The id written after a sequence has ended and used for left padding: ``pad_token_id``, else the
            first EOS id (HF's rule), else None.
    """

    config: GenerationConfig
    default_max_length: bool
    eos: tuple[int, ...]
    pad_id: int | None

    @property
    def use_cache(self) -> bool:
        """Whether calls keep a KV cache: unless ``use_cache`` is False (None leaves it to the model, whose default
        is to cache, as in HF's ``generate``)."""
        return self.config.use_cache is not False

    @property
    def eos_ids(self) -> frozenset[int]:
        """The EOS ids as a set (completions are cut after the first of them)."""
        return frozenset(self.eos)


def settle_config(
    generation_config: GenerationConfig | None,
    kwargs: dict[str, Any],
    *,
    model_generation_config: GenerationConfig | None = None,
) -> SettledConfig:
    """Merge (HF's precedence, `merge_config`) and validate a configuration once, for any number of calls.

    Raises:
        TypeError: ``generation_config`` is not a `GenerationConfig`.
        ValueError: An unknown field or a value out of range.
        NotImplementedError: Beam search and other search modes.

    Example::

        >>> settled = settle_config(None, {"eos_token_id": [5, 2], "max_new_tokens": 4})
        >>> settled.eos, settled.pad_id, settled.config.max_new_tokens
        ((5, 2), 5, 4)
    """
    if generation_config is not None and not isinstance(generation_config, GenerationConfig):
        raise TypeError(
            f"`generation_config` must be a transformers.GenerationConfig or None, got {type(generation_config).__name__}"
        )
    # HF decides whether `max_length` is its implicit default before any defaults are merged.
    default_max_length = (
        kwargs.get("max_length") is None
        and (generation_config is None or generation_config.max_length is None)
        and (model_generation_config is None or model_generation_config.max_length is None)
    )
    cfg = merge_config(generation_config, kwargs, model_generation_config=model_generation_config)
    _validate_values(cfg)
    eos_ids = _eos_ids(cfg.eos_token_id)
    pad = cfg.pad_token_id
    pad_id = int(pad.reshape(-1)[0]) if isinstance(pad, torch.Tensor) else pad if pad is not None else (
        eos_ids[0] if eos_ids else None)
    return SettledConfig(config=cfg, default_max_length=default_max_length, eos=eos_ids, pad_id=pad_id)


@dataclass
class ResolvedConfig:
    """A `GenerationConfig` with lengths and special tokens settled for one call of `generate`.

    Attributes:
        config: The merged configuration (a private copy; ``max_length``/``min_length`` are final).
        eos: End-of-sequence ids as a 1-D tensor, or None.
        pad: The id written after a sequence has ended (``pad_token_id``, else the first EOS id), or None.
    """

    config: GenerationConfig
    eos: torch.Tensor | None
    pad: torch.Tensor | None


def for_prompt(
    settled: SettledConfig, *, prompt_length: int, max_position_embeddings: int | None, device: torch.device
) -> ResolvedConfig:
    """The lengths and special-token tensors of one call, from a configuration settled once (as HF's ``generate``).

    Raises:
        ValueError: ``max_length`` leaves no room after the prompt.
    """
    cfg = copy.copy(settled.config)  # the lengths are this call's; every other field is shared, never written
    if cfg.max_new_tokens is not None:
        cfg.max_length = cfg.max_new_tokens + prompt_length
    elif settled.default_max_length:
        cfg.max_length = cfg.max_length + prompt_length
        if max_position_embeddings is not None:
            cfg.max_length = min(cfg.max_length, max_position_embeddings)
    if cfg.min_new_tokens is not None:
        cfg.min_length = cfg.min_new_tokens + prompt_length
    if prompt_length >= cfg.max_length:
        raise ValueError(
            f"`max_length` must be larger than the prompt length {prompt_length}, got {cfg.max_length}; "
            "set `max_new_tokens` instead"
        )
    eos = torch.tensor(settled.eos, dtype=torch.long, device=device) if settled.eos else None
    pad = torch.tensor(settled.pad_id, dtype=torch.long, device=device) if settled.pad_id is not None else None
    return ResolvedConfig(config=cfg, eos=eos, pad=pad)
