"""lightning-gen: watch what your language model learns.

`generate` gives Hugging Face's decoding semantics to any torch model that returns logits; `GenerationMonitor`
is the Lightning callback that samples fixed prompts during training and logs them.

The package is in layers, each a folder: `decoding` (torch and transformers, never Lightning), `text` (prompts,
samples, tokenizers, rendering, quality statistics), `evaluation` (`loglikelihood` as lm-evaluation-harness scores,
task files and their metrics), `monitor` (the Lightning callback) and `viewer` (the ``lightning-gen`` command and
the TensorBoard dashboard, neither of which imports torch). Every name here is imported on first use, so
``from lightning_gen import generate`` never imports Lightning and the viewer never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning_gen.decoding.adapters import (
        GptFastAdapter,
        HFAdapter,
        LitGPTAdapter,
        ModelAdapter,
        PlainAdapter,
        TorchtuneAdapter,
        last_logits,
    )
    from lightning_gen.decoding.batching import generate_completions
    from lightning_gen.decoding.generation import generate
    from lightning_gen.evaluation.loglikelihood import loglikelihood
    from lightning_gen.monitor.generation_monitor import GenerationMonitor
    from lightning_gen.monitor.task_monitor import TaskMonitor
    from lightning_gen.text.prompts import load_prompts
    from lightning_gen.text.samples import Prompt, Sample
    from lightning_gen.text.tokenization import LoadedTokenizer, TextTokenizer, load_tokenizer

# The public face: each name and the module that defines it.
_HOMES = {
    "GenerationMonitor": "lightning_gen.monitor.generation_monitor",
    "GptFastAdapter": "lightning_gen.decoding.adapters",
    "HFAdapter": "lightning_gen.decoding.adapters",
    "LitGPTAdapter": "lightning_gen.decoding.adapters",
    "LoadedTokenizer": "lightning_gen.text.tokenization",
    "ModelAdapter": "lightning_gen.decoding.adapters",
    "PlainAdapter": "lightning_gen.decoding.adapters",
    "Prompt": "lightning_gen.text.samples",
    "Sample": "lightning_gen.text.samples",
    "TaskMonitor": "lightning_gen.monitor.task_monitor",
    "TextTokenizer": "lightning_gen.text.tokenization",
    "TorchtuneAdapter": "lightning_gen.decoding.adapters",
    "generate": "lightning_gen.decoding.generation",
    "generate_completions": "lightning_gen.decoding.batching",
    "last_logits": "lightning_gen.decoding.adapters",
    "load_prompts": "lightning_gen.text.prompts",
    "load_tokenizer": "lightning_gen.text.tokenization",
    "loglikelihood": "lightning_gen.evaluation.loglikelihood",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'lightning_gen' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
