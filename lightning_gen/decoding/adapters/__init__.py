"""How `generate` talks to a model: one small adapter per calling protocol.

`generate` only needs "logits of the next token for every row" at two moments: after the prompt (prefill) and
after each new token (decode). An adapter answers those two questions for one model protocol and owns whatever
cache that needs; after the call the model's buffers, submodules and cache sizes are as they were
(`ModelAdapter.kept`). Five are built in and detected by what the model's methods accept (`detect_protocol`):
transformers models (`HFAdapter`), litgpt, gpt-fast, torchtune, and plain ``model(ids)``. A new cache protocol
is a subclass with three methods::

    class MyCacheAdapter(ModelAdapter):
        def prefill(self, input_ids, attention_mask, *, max_length):
            self.model.allocate(input_ids.shape[0], max_length)
            return last_logits(self.model(input_ids, start=0))        # (B, V)

        def decode(self, input_ids, attention_mask):
            pos = input_ids.shape[1] - 1
            return last_logits(self.model(input_ids[:, -1:], start=pos))

        def close(self):
            self.model.free()

    generate(model, ids, adapter=MyCacheAdapter(model), max_new_tokens=20)

Modules: `base` (the protocol, logits), `state` (what a call leaves as it found), `advertised` (context,
vocabulary, device), `plain`, `input_pos` (litgpt, gpt-fast, torchtune), `hf`, `resolve` (which one).
"""

from lightning_gen.decoding.adapters.base import (
    ModelAdapter,
    has_padding,
    last_logits,
    output_logits,
    require_compilable,
)
from lightning_gen.decoding.adapters.advertised import (
    advertised_context,
    advertised_vocab,
    advertises,
    find_context_length,
    find_vocab_size,
    model_device,
)
from lightning_gen.decoding.adapters.hf import HFAdapter
from lightning_gen.decoding.adapters.input_pos import GptFastAdapter, LitGPTAdapter, TorchtuneAdapter, compute_dtype
from lightning_gen.decoding.adapters.plain import PlainAdapter
from lightning_gen.decoding.adapters.recording import Recording
from lightning_gen.decoding.adapters.resolve import AdapterName, adapter_class, detect_protocol, resolve_adapter
from lightning_gen.decoding.adapters.state import StateChanges, kept_state, watched_state

__all__ = [
    "AdapterName",
    "GptFastAdapter",
    "HFAdapter",
    "LitGPTAdapter",
    "ModelAdapter",
    "PlainAdapter",
    "Recording",
    "StateChanges",
    "TorchtuneAdapter",
    "adapter_class",
    "advertised_context",
    "advertised_vocab",
    "advertises",
    "compute_dtype",
    "detect_protocol",
    "find_context_length",
    "find_vocab_size",
    "has_padding",
    "kept_state",
    "last_logits",
    "model_device",
    "output_logits",
    "require_compilable",
    "resolve_adapter",
    "watched_state",
]
