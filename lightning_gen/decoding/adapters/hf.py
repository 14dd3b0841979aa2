"""transformers models, prepared and called by their own generation code, step for step as ``model.generate``."""

from __future__ import annotations

import copy
import inspect
import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lightning_gen.decoding.adapters._generic_step import GenericStep
from lightning_gen.decoding.adapters.base import ModelAdapter, has_padding, last_logits, output_logits

__all__ = ["HFAdapter"]


class HFAdapter(ModelAdapter):
    """A transformers `PreTrainedModel`, called exactly as its own `generate` calls it.

    The adapter does what HF's ``generate`` and ``_sample`` do between the forwards, by calling the model's own
    methods: position ids from the attention mask (``_prepare_position_ids_for_generation``), the mask dropped
    when it has no padding, ``logits_to_keep=1`` where the forward takes it, the cache HF would choose
    (``_prepare_cache_for_generation``: a `DynamicCache`, the static cache of ``cache_implementation``, or none for
    models that make their own, such as Mamba, RWKV, xLSTM or MiniMax), then ``prepare_inputs_for_generation``
    before every forward (which is where Mamba drops the mask at decode steps and Phi-3 re-runs the prompt when
    it crosses ``original_max_position_embeddings``) and ``_update_model_kwargs_for_generation`` after it (RWKV's
    ``state``). A model without that generation code (a bare `PreTrainedModel`) is re-run on the whole sequence,
    with its attention mask. Where both functions are `GenerationMixin`'s own, a decode step's inputs are built
    directly once they have matched HF's (`lightning_gen.decoding.adapters._generic_step`).
    """

    supports_attention_mask = True
    _compiled: Any = None  # torch.compile'd `model.__call__` for the decode steps, when `compile` was called

    def __init__(self, model: nn.Module, *, context_length: int | None = None, vocab_size: int | None = None,
                 use_cache: bool = True) -> None:
        # HF only warns past `max_position_embeddings` (rotary models run beyond it): no limit unless given.
        super().__init__(model, context_length=context_length, vocab_size=vocab_size)
        self.context_length = context_length
        self.use_cache = use_cache
        self.generation_config: Any = None  # set by `generate` to the resolved configuration
        self._kwargs: dict[str, Any] = {}
        self._step: GenericStep | None = None  # the generic decode step, where it applies
        #: The keyword arguments the model's forward takes.
        self.forward_parameters = frozenset(inspect.signature(model.forward).parameters)
        # Remote code written before transformers renamed `past_key_values` to `cache` (during 5.x) takes the old name.
        params = self.forward_parameters
        #: The forward's keyword for the cache.
        self.cache_argument = "past_key_values" if "past_key_values" in params and "cache" not in params else "cache"
        self._generative = callable(getattr(model, "prepare_inputs_for_generation", None)) and callable(
            getattr(model, "_update_model_kwargs_for_generation", None))

    @property
    def can_compile(self) -> bool:
        """A model that can run its forward as one graph over a static cache (HF's ``_can_compile_fullgraph``)."""
        return (self._generative and self.use_cache and bool(getattr(self.model, "_can_compile_fullgraph", False))
                and self.model._supports_default_dynamic_cache())

    def compile(self, options: Mapping[str, Any]) -> None:
        """Decode through a static cache (fixed shapes) with the forward compiled, as HF's ``generate`` does on a GPU;
        the prompt runs eagerly."""
        self._compiled = _compiled_call(self.model, tuple(sorted(options.items())))

    def configure(self, generation_config: Any) -> None:
        self.generation_config = generation_config

    def _config(self, max_length: int) -> Any:
        from transformers import GenerationConfig

        base = self.generation_config or getattr(self.model, "generation_config", None) or GenerationConfig()
        config = copy.deepcopy(base)
        config.use_cache = self.use_cache
        config.max_length = max_length
        if self._compiled is not None and config.cache_implementation is None:
            config.cache_implementation = "static"  # fixed shapes for the compiled steps
        return config

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *, max_length: int) -> torch.Tensor:
        if not self._generative:
            return self._bare_forward(input_ids, attention_mask)
        from transformers.generation.configuration_utils import GenerationMode

        model = self.model
        params = self.forward_parameters
        config = self._config(max_length)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs: dict[str, Any] = {}
        if "attention_mask" in params:
            kwargs["attention_mask"] = attention_mask
        if "position_ids" in params:
            kwargs["position_ids"] = model._prepare_position_ids_for_generation(input_ids, kwargs)
        # Releases that still count `cache_position` (5.3 ...) keep the mask; later ones drop a mask without padding.
        counts_positions = callable(getattr(model, "_get_initial_cache_position", None))
        if "attention_mask" in params and not has_padding(attention_mask) and not counts_positions:
            config._mask_length = attention_mask.shape[1]  # remembered, as HF does
            kwargs["attention_mask"] = None
        if "logits_to_keep" in params:
            kwargs["logits_to_keep"] = 1
        mode = GenerationMode.SAMPLE if config.do_sample else GenerationMode.GREEDY_SEARCH
        # HF sizes static caches for the batch before `num_return_sequences` copies, then multiplies.
        batch = input_ids.shape[0] // max(1, config.num_return_sequences or 1)
        model._prepare_cache_for_generation(config, kwargs, mode, batch, max_length - 1)
        kwargs["use_cache"] = self.use_cache
        if counts_positions:
            kwargs = model._get_initial_cache_position(input_ids.shape[1], input_ids.device, kwargs)
        # HF's `_prefill` with a new cache: the whole prompt, as the model prepares it for its first forward.
        outputs = self._call(model.prepare_inputs_for_generation(input_ids, is_first_iteration=True, **kwargs))
        self._kwargs = model._update_model_kwargs_for_generation(outputs, kwargs, is_encoder_decoder=False)
        generic = self._compiled is None and GenericStep.applies(model, self._kwargs, input_ids.device)
        self._step = GenericStep(self._kwargs) if generic else None
        return last_logits(outputs)

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if not self._generative:
            return self._bare_forward(input_ids, attention_mask)
        model, step = self.model, self._step
        if step is not None and step.verified:
            outputs = self._call(step.inputs(input_ids))
            step.update(outputs)
            return last_logits(outputs)
        inputs = model.prepare_inputs_for_generation(
            input_ids, next_sequence_length=1 if self._kwargs["use_cache"] else None, **self._kwargs)
        if step is not None and not step.agrees(input_ids, inputs):
            self._step = step = None  # HF's functions prepare every later step of this call
        outputs = self._call(inputs, compiled=self._compiled)
        self._kwargs = model._update_model_kwargs_for_generation(outputs, self._kwargs, is_encoder_decoder=False)
        if step is not None:
            step.update(outputs)
        return last_logits(outputs)

    def _call(self, inputs: dict[str, Any], compiled: Any = None) -> Any:
        if compiled is not None:
            outputs = compiled(**inputs, return_dict=True)
            # Under CUDA graphs the next replay overwrites the output: keep a copy of the logits.
            return _Outputs(logits=outputs.logits.clone(), cache=_cache_of(outputs))
        if self.cache_argument == "cache":
            return self.model(**inputs, return_dict=True)
        if "cache" in inputs:
            inputs[self.cache_argument] = inputs.pop("cache")
        outputs = self.model(**inputs, return_dict=True)  # remote code's own output: a dict, a tuple ...
        return _Outputs(logits=output_logits(outputs), cache=_cache_of(outputs))

    def _bare_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        inputs: dict[str, Any] = {"input_ids": input_ids}
        if has_padding(attention_mask):
            inputs["attention_mask"] = attention_mask
        return last_logits(self.model(**inputs))

    def close(self) -> None:
        self._kwargs, self._step = {}, None  # the cache goes with them


# One compiled forward per model and set of options, shared by every call, so a new round reuses its graphs.
_COMPILED: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Any]] = weakref.WeakKeyDictionary()


def _compiled_call(model: nn.Module, options: tuple[tuple[str, Any], ...]) -> Any:
    per_model = _COMPILED.setdefault(model, {})
    try:
        found = per_model.get(options)
    except TypeError:  # unhashable options (an inductor `options` dict ...): a compiled forward of its own
        return torch.compile(model.__call__, **dict(options))
    if found is None:
        found = per_model[options] = torch.compile(model.__call__, **dict(options))
    return found


class _Outputs(dict):
    """A forward's logits and cache, readable as transformers' generation code reads outputs of every release:
    ``"cache" in outputs``, ``outputs["cache"]``, ``outputs.past_key_values``."""

    def __init__(self, *, logits: torch.Tensor, cache: Any) -> None:
        super().__init__(logits=logits, cache=cache, past_key_values=cache)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _cache_of(outputs: Any) -> Any:
    getter = outputs.get if isinstance(outputs, Mapping) else lambda key, default=None: getattr(outputs, key, default)
    cache = getter("cache", None)
    return cache if cache is not None else getter("past_key_values", None)
