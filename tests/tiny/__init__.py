"""The tests' tiny models, re-creations and tokenizers, in one place; ``from tiny import X`` for any of them.

* `runs`: LightningModules that train in milliseconds (`TinyLM`, `TinyCacheLM`), a user's own `GPT` kept in
  ``self.model`` of a `Module`, a real CPU `trainer`, the `text_events` it logged, and `plan_for` a round by hand.
* `tokenization`: character-level tokenizers, nanoGPT's ``meta.pkl`` lambdas, a byte-level tiktoken encoding,
  byte-level BPE trained on CPython's help topics, and the 96-token transformers tokenizer of the fixtures' models.
* `hf_models`: the tiny transformers models (`tiny_gpt2`, `tiny_llama`), built from configs with random weights.
* `decoding`: what the decoding tests decode with: a `PROMPT`, a plain `CumMeanLM`, litgpt's cache protocol
  re-created with counters (`LitStyleLM`), the real litgpt (`build_litgpt`), and the `greedy_reference` loop.
* Re-creations of the model code people pretrain with, each with its own reference greedy loop: `nanogpt`,
  `gpt_fast`, `torchtune_decoder` (checked against the real package), `recurrent` (a recurrent-state model and its
  `StateAdapter`). litgpt's model is not re-created: the real package is used (`LitStyleLM` copies only its cache
  protocol).
* `seeding`: weights from a seed, the caller's global RNG left as it was.
"""

from .decoding import (
    N_TOKENS,
    PROMPT,
    CumMeanLM,
    LitStyleLM,
    build_litgpt,
    greedy_reference,
    kv_caches,
)
from .gpt_fast import (
    GptFast,
    KVCache,
    ModelArgs,
    ReForward,
    gpt_fast_generate,
    tiny_gpt_fast,
)
from .hf_models import SPECIAL_IDS, tiny_gpt2, tiny_llama
from .nanogpt import GPTConfig, NanoGPT
from .recurrent import RecurrentArgs, RecurrentLM, StateAdapter, recurrent_generate
from .runs import GPT, Module, TinyCacheLM, TinyLM, plan_for, text_events, trainer
from .seeding import init_weights, seeded
from .tokenization import (
    BOS_ID,
    CORPUS,
    EOS_ID,
    FIRST_REGULAR_ID,
    PAD_ID,
    SYMBOLS,
    VOCAB,
    VOCAB_SIZE,
    CharTokenizer,
    byte_tiktoken,
    hf_char_tokenizer,
    meta_pkl_tokenizer,
    train_bpe,
)
from .torchtune_decoder import TorchtuneDecoder, torchtune_generate

__all__ = [
    "BOS_ID", "CORPUS", "EOS_ID", "FIRST_REGULAR_ID", "GPT", "N_TOKENS", "PAD_ID", "PROMPT", "SPECIAL_IDS", "SYMBOLS",
    "VOCAB", "VOCAB_SIZE", "CharTokenizer", "CumMeanLM", "GPTConfig", "GptFast", "KVCache", "LitStyleLM",
    "ModelArgs", "Module", "NanoGPT", "ReForward", "RecurrentArgs", "RecurrentLM", "StateAdapter", "TinyCacheLM",
    "TinyLM", "TorchtuneDecoder", "build_litgpt", "byte_tiktoken", "gpt_fast_generate", "greedy_reference",
    "hf_char_tokenizer", "init_weights", "kv_caches", "meta_pkl_tokenizer", "plan_for", "recurrent_generate", "seeded",
    "text_events", "tiny_gpt2", "tiny_gpt_fast", "tiny_llama", "torchtune_generate", "train_bpe", "trainer",
]
