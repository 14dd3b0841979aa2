"""A recurrent-state model in the style of mamba-minimal (``args.vocab_size``, ``forward(ids, state=None) ->
(logits, state)``), its own greedy loop, and the `StateAdapter` that drives it through `generate`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lightning_gen.decoding.adapters import ModelAdapter


@dataclass
class RecurrentArgs:
    vocab_size: int = 65
    d_model: int = 32


class RecurrentLM(nn.Module):
    """A GRU language model with mamba-minimal's surface: settings in ``args``, ``forward(ids, state=None) ->
    (logits (B, T, V), state)``; the state after the last token is all it needs to go on."""

    def __init__(self, args: RecurrentArgs) -> None:
        super().__init__()
        self.args = args
        self.embedding = nn.Embedding(args.vocab_size, args.d_model)
        self.rnn = nn.GRU(args.d_model, args.d_model, batch_first=True)
        self.lm_head = nn.Linear(args.d_model, args.vocab_size)

    def forward(self, ids: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = self.rnn(self.embedding(ids), state)
        return self.lm_head(out), state


def recurrent_generate(model: RecurrentLM, prompt: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The recurrent model's own greedy loop: the prompt once, then one token and the state."""
    with torch.no_grad():
        logits, state = model(prompt)
        seq = prompt
        for _ in range(max_new_tokens):
            token = logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, token], dim=1)
            logits, state = model(token, state)
    return seq


class StateAdapter(ModelAdapter):
    """The recurrent protocol for `generate`: the state carried between steps instead of a KV cache."""

    needs_room_for_new_tokens = False

    def prefill(self, input_ids, attention_mask, *, max_length):
        logits, self._state = self.model(input_ids)
        return logits[:, -1]  # (B, V)

    def decode(self, input_ids, attention_mask):
        logits, self._state = self.model(input_ids[:, -1:], self._state)
        return logits[:, -1]

    def close(self):
        self._state = None
