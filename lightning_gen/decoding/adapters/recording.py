"""What HF's ``return_dict_in_generate`` returns: the logits of every step and the processed scores."""

from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessor

from lightning_gen.decoding.adapters.base import ModelAdapter

__all__ = ["Recording"]


class _ScoresProcessor(LogitsProcessor):
    """Last in the chain: keeps a copy of the scores the next token is chosen from."""

    def __init__(self, into: list[torch.Tensor]) -> None:
        self.into = into

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.into.append(scores.clone())
        return scores


class Recording(ModelAdapter):
    """Wraps the adapter of one `generate` call and keeps what ``output_logits`` / ``output_scores`` ask for.

    ``logits``: each step's raw next-token logits in float32 `(B, V)`, as HF's ``outputs.logits[:, -1]``;
    ``scores``: the processed scores, from `processor` (put last in the processor chain).
    """

    def __init__(self, inner: ModelAdapter, *, logits: bool, scores: bool) -> None:
        self.inner = inner
        self.model = inner.model
        self.context_length, self.vocab_size = inner.context_length, inner.vocab_size
        self.supports_attention_mask = inner.supports_attention_mask
        self.needs_room_for_new_tokens = inner.needs_room_for_new_tokens
        self.logits: list[torch.Tensor] | None = [] if logits else None
        self.scores: list[torch.Tensor] | None = [] if scores else None
        self.processor = _ScoresProcessor(self.scores) if scores else None

    def _keep(self, logits: torch.Tensor) -> torch.Tensor:
        if self.logits is not None:
            self.logits.append(logits.to(dtype=torch.float32, copy=True))
        return logits

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *, max_length: int) -> torch.Tensor:
        return self._keep(self.inner.prefill(input_ids, attention_mask, max_length=max_length))

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self._keep(self.inner.decode(input_ids, attention_mask))

    def close(self) -> None:
        self.inner.close()

    def output(self, sequences: torch.Tensor, *, steps: int) -> Any:
        """HF's `GenerateDecoderOnlyOutput` for the call's ``sequences`` and its ``steps`` new tokens (steps a loop
        ran past the stop and took back are not kept)."""
        from transformers.generation.utils import GenerateDecoderOnlyOutput

        as_tuple = (lambda items: tuple(items[:steps]) if items is not None else None)
        return GenerateDecoderOnlyOutput(sequences=sequences, scores=as_tuple(self.scores), logits=as_tuple(self.logits))
