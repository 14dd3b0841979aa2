"""The decode step of transformers' generic generation code, without the generality it pays for at every token.

Between two forwards HF's loop calls ``prepare_inputs_for_generation`` and ``_update_model_kwargs_for_generation``;
`lightning_gen.decoding.adapters.HFAdapter` calls them too, so that every model is prepared by its own code. For the
many models that inherit both unchanged from `GenerationMixin`, with a cache that is not compileable (a
`DynamicCache`) and only the keyword arguments the adapter's prefill leaves, the two amount to this, per token:

* the inputs: the last token (a contiguous copy), the cache, the last position id, the 2D attention mask when there
  is one, and ``logits_to_keep`` and ``use_cache`` as they are;
* the update: the cache the forward returned, the next position id (``last + 1``), the mask one column longer.

Their generic code reaches that through some forty Python-level steps (dictionary scans, checks of the cache, the
config and the device, a position-id tensor that grows and is sliced again), a tenth of a small model's forward.
`GenericStep` builds the same inputs directly. It checks itself against HF's own two functions at the first
`VERIFIED_STEPS` decode steps of every call, which run on HF's inputs: at the first difference (another transformers
release, a key it does not know) the call goes on with HF's functions alone.

Example::

    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=11)).eval()
    >>> GenericStep.applies(model, {"use_cache": True, "cache": None}, torch.device("cpu"))
    False
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.generation.utils import GenerationMixin

__all__ = ["VERIFIED_STEPS", "GenericStep"]

#: Decode steps of each call that run on HF's own inputs while `GenericStep` compares its inputs with them.
VERIFIED_STEPS = 2
# The keyword arguments the adapter's prefill leaves for a decoder-only model (as `_update_model_kwargs_for_generation`
# returns them); with any other, HF's functions prepare every step.
_KNOWN = frozenset({"cache", "position_ids", "attention_mask", "logits_to_keep", "use_cache"})
_INHERITED = ("prepare_inputs_for_generation", "_update_model_kwargs_for_generation")


class GenericStep:
    """The decode steps of one call, inputs and update, as `GenerationMixin`'s generic functions make them (see the
    module), once `agrees` has compared them with HF's own at `VERIFIED_STEPS` steps.

    Args:
        kwargs: The keyword arguments HF's update returned after the prefill, for a model for which `applies`
            held; the step keeps its own copy.
    """

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        self._kwargs = dict(kwargs)
        self._checks_left = VERIFIED_STEPS

    @staticmethod
    def applies(model: nn.Module, kwargs: Mapping[str, Any], device: torch.device) -> bool:
        """Whether the decode steps of ``model`` with ``kwargs`` (after the prefill, inputs on ``device``) are the
        generic ones this class builds."""
        cls = type(model)
        cache, mask, position = kwargs.get("cache"), kwargs.get("attention_mask"), kwargs.get("position_ids")
        return (all(getattr(cls, name, None) is getattr(GenerationMixin, name) for name in _INHERITED)
                and not model.config.is_encoder_decoder and not cls.is_remote_code()
                and set(kwargs) <= _KNOWN and kwargs.get("use_cache") is True
                and isinstance(cache, Cache) and not cache.is_compileable
                and (mask is None or (isinstance(mask, torch.Tensor) and mask.dim() == 2))
                and (position is None or (isinstance(position, torch.Tensor) and position.dim() == 2))
                and model.device == device)

    @property
    def verified(self) -> bool:
        """Whether `agrees` has held at every checked step: the adapter then prepares steps by `inputs` alone."""
        return self._checks_left == 0

    def inputs(self, input_ids: torch.Tensor) -> dict[str, Any]:
        """The forward's keyword arguments for the decode step of ``input_ids`` `(B, T)`."""
        inputs: dict[str, Any] = {"input_ids": input_ids[:, -1:].clone(memory_format=torch.contiguous_format)}
        for key, value in self._kwargs.items():
            if key == "position_ids":
                if value is not None:
                    inputs[key] = value if value.shape[-1] == 1 else value[..., -1:].clone(
                        memory_format=torch.contiguous_format)
            elif value is not None or key not in ("cache", "attention_mask"):
                inputs[key] = value
        return inputs

    def update(self, outputs: Any) -> None:
        """After a forward: its cache, the next position id and the attention mask one column longer."""
        kwargs = self._kwargs
        if "cache" in outputs:
            kwargs["cache"] = outputs["cache"]
        if (position := kwargs.get("position_ids")) is not None:
            kwargs["position_ids"] = position[..., -1:] + 1
        if (mask := kwargs.get("attention_mask")) is not None:
            kwargs["attention_mask"] = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)

    def agrees(self, input_ids: torch.Tensor, hf_inputs: Mapping[str, Any]) -> bool:
        """Whether `inputs` for ``input_ids`` are HF's ``hf_inputs`` (keys, values, dtypes, shapes and devices);
        each call counts one checked step."""
        self._checks_left -= 1
        return _same(self.inputs(input_ids), hf_inputs)


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.dtype == y.dtype
                    and x.shape == y.shape and x.device == y.device and torch.equal(x, y)):
                return False
        elif x is not y and x != y:
            return False
    return True
