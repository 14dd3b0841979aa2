"""Plain ``model(ids) -> logits`` models: the whole sequence again at every step."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from lightning_gen.decoding.adapters.base import ModelAdapter, last_logits, output_logits

__all__ = ["PlainAdapter"]


class PlainAdapter(ModelAdapter):
    """``model(ids)`` re-run on the whole sequence every step, cropped to the context length from the left."""

    needs_room_for_new_tokens = False

    def _forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.context_length is not None and input_ids.shape[1] > self.context_length:
            input_ids = input_ids[:, -self.context_length:]
        return last_logits(self.model(input_ids))

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *, max_length: int) -> torch.Tensor:
        return self._forward(input_ids)

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self._forward(input_ids)

    def sequence_logits(self, input_ids: torch.Tensor) -> Any:
        output = self.model(input_ids)
        try:
            logits = output_logits(output)
        except (TypeError, KeyError):  # not logits at all: the caller says what it got
            return output
        if input_ids.shape[1] > 1 and logits.dim() == 3 and logits.shape[1] == 1 and _takes_targets(self.model):
            # nanoGPT's forward computes every position's logits only when given targets (the loss is ignored).
            output = self.model(input_ids, targets=input_ids)
        return output


def _takes_targets(model: Any) -> bool:
    try:
        return "targets" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return False
