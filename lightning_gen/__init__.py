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
from lightning_gen.batching import generate_completions
from lightning_gen.generation import generate
from lightning_gen.prompts import Prompt, load_prompts
from lightning_gen.rendering import Sample
from lightning_gen.tokenization import LoadedTokenizer, TextTokenizer, load_tokenizer

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning_gen.monitor import GenerationMonitor


def __getattr__(name: str) -> Any:
    # The callback imports Lightning; `generate` users and the `lightning-gen` viewer should not pay for that.
    if name == "GenerationMonitor":
        from lightning_gen.monitor import GenerationMonitor

        return GenerationMonitor
    raise AttributeError(f"module 'lightning_gen' has no attribute {name!r}")


__all__ = [
    "GenerationMonitor",
    "GptFastAdapter",
    "HFAdapter",
    "LitGPTAdapter",
    "LoadedTokenizer",
    "ModelAdapter",
    "PlainAdapter",
    "Prompt",
    "Sample",
    "TextTokenizer",
    "generate",
    "generate_completions",
    "last_logits",
    "load_prompts",
    "load_tokenizer",
]
