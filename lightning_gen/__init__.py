"""lightning-gen: watch what your language model learns.

`generate` gives Hugging Face's decoding semantics to any torch model that returns logits; `GenerationMonitor`
is the Lightning callback that samples fixed prompts during training and logs them.
"""

from lightning_gen.adapters import (
    GptFastAdapter,
    HFAdapter,
    LitGPTAdapter,
    ModelAdapter,
    PlainAdapter,
    last_logits,
)
from lightning_gen.generation import generate

__all__ = [
    "GptFastAdapter",
    "HFAdapter",
    "LitGPTAdapter",
    "ModelAdapter",
    "PlainAdapter",
    "generate",
    "last_logits",
]
